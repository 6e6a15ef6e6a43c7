import { AppError } from '../domain/errors.ts';
import type { AppDeps } from './deps.ts';
import { alertNotFound } from './list-alerts.ts';
import type { TenantRepositories } from './storage-ports.ts';

/**
 * OPEN → ACKNOWLEDGED (someone is on it). Acknowledging again returns the alert as it is;
 * a CLOSED alert answers 409. An escalation later sets the alert OPEN again.
 */
export function createAcknowledgeAlert({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  const run = (actorId: string, id: number) => async ({ alerts, audit }: TenantRepositories) => {
    const now = clock.now();
    const acknowledged = await alerts.acknowledgeAlert(id, actorId, now);
    if (acknowledged) {
      await audit.recordAudit({ tenantId: acknowledged.tenant_id, actor: actorId, action: 'alert.acknowledged', targetType: 'alert', targetId: id, at: now });
      return acknowledged;
    }
    const current = await alerts.findAlert(id);
    if (!current) throw alertNotFound(id);
    if (current.status === 'CLOSED') throw new AppError('ALERT_CLOSED', `alert ${id} is closed`);
    return current;
  };
  return {
    forTenant: (actor: { id: string; tenantId: string }, id: number) => storage.asTenant(actor.tenantId, run(actor.id, id)),
    forOperator: (actorId: string, id: number) => storage.asOperator(run(actorId, id)),
  };
}
