import type { Queryable } from '../storage/driver.ts';
import { closeAlertManually, findAlert } from '../storage/repos/alerts-repo.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import type { AppDeps } from './deps.ts';
import { alertNotFound } from './list-alerts.ts';

/**
 * Closes an alert by hand (close_reason `manual`) and queues alert.closed for the tenant's
 * webhooks in the same transaction. Closing a closed alert returns it unchanged. The worker
 * does not raise the same certificate's expiry alert again until its severity rises.
 */
export function createCloseAlert({ db, clock }: Pick<AppDeps, 'db' | 'clock'>) {
  const run = (actorId: string, id: number) => async (tx: Queryable) => {
    const now = clock.now();
    const closed = await closeAlertManually(tx, id, actorId, now);
    if (closed) {
      await recordAudit(tx, { tenantId: closed.tenant_id, actor: actorId, action: 'alert.closed', targetType: 'alert', targetId: id, at: now });
      return closed;
    }
    const current = await findAlert(tx, id);
    if (!current) throw alertNotFound(id);
    return current;
  };
  return {
    forTenant: (actor: { id: string; tenantId: string }, id: number) => db.asTenant(actor.tenantId, run(actor.id, id)),
    forOperator: (actorId: string, id: number) => db.asOperator(run(actorId, id)),
  };
}
