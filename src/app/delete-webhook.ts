import { recordAudit } from '../storage/repos/audit-repo.ts';
import { deleteWebhook } from '../storage/repos/webhooks-repo.ts';
import { webhookNotFound } from './create-webhook.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** Removes the endpoint and the deliveries still queued for it. */
export function createDeleteWebhook({ db, clock }: Pick<AppDeps, 'db' | 'clock'>) {
  return async (actor: Actor, id: number) => {
    const now = clock.now();
    await db.asTenant(actor.tenantId, async (tx) => {
      if (!(await deleteWebhook(tx, id))) throw webhookNotFound(id);
      await recordAudit(tx, { tenantId: actor.tenantId, actor: actor.id, action: 'webhook.deleted', targetType: 'webhook', targetId: id, at: now });
    });
  };
}
