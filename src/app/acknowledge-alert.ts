import { AppError } from '../domain/errors.ts';
import type { Queryable } from '../storage/driver.ts';
import { acknowledgeAlert, findAlert } from '../storage/repos/alerts-repo.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import type { AppDeps } from './deps.ts';
import { alertNotFound } from './list-alerts.ts';

/**
 * OPEN → ACKNOWLEDGED (someone is on it). Acknowledging again returns the alert as it is;
 * a CLOSED alert answers 409. An escalation later sets the alert OPEN again.
 */
export function createAcknowledgeAlert({ db, clock }: Pick<AppDeps, 'db' | 'clock'>) {
  const run = (actorId: string, id: number) => async (tx: Queryable) => {
    const now = clock.now();
    const acknowledged = await acknowledgeAlert(tx, id, actorId, now);
    if (acknowledged) {
      await recordAudit(tx, { tenantId: acknowledged.tenant_id, actor: actorId, action: 'alert.acknowledged', targetType: 'alert', targetId: id, at: now });
      return acknowledged;
    }
    const current = await findAlert(tx, id);
    if (!current) throw alertNotFound(id);
    if (current.status === 'CLOSED') throw new AppError('ALERT_CLOSED', `alert ${id} is closed`);
    return current;
  };
  return {
    forTenant: (actor: { id: string; tenantId: string }, id: number) => db.asTenant(actor.tenantId, run(actor.id, id)),
    forOperator: (actorId: string, id: number) => db.asOperator(run(actorId, id)),
  };
}
