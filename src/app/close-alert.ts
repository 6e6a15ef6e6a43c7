import type { AppDeps } from './deps.ts';
import { alertNotFound } from './list-alerts.ts';
import type { TenantRepositories } from './storage-ports.ts';

/**
 * Closes an alert by hand (close_reason `manual`) and queues alert.closed for the tenant's
 * webhooks in the same transaction. Closing a closed alert returns it unchanged. The worker
 * does not raise the same certificate's expiry alert again until its severity rises.
 */
export function createCloseAlert({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  const run = (actorId: string, id: number) => async ({ alerts, audit }: TenantRepositories) => {
    const now = clock.now();
    const closed = await alerts.closeAlertManually(id, actorId, now);
    if (closed) {
      await audit.recordAudit({ tenantId: closed.tenant_id, actor: actorId, action: 'alert.closed', targetType: 'alert', targetId: id, at: now });
      return closed;
    }
    const current = await alerts.findAlert(id);
    if (!current) throw alertNotFound(id);
    return current;
  };
  return {
    forTenant: (actor: { id: string; tenantId: string }, id: number) => storage.asTenant(actor.tenantId, run(actor.id, id)),
    forOperator: (actorId: string, id: number) => storage.asOperator(run(actorId, id)),
  };
}
