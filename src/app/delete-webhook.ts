import { webhookNotFound } from './create-webhook.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** Removes the endpoint and the deliveries still queued for it. */
export function createDeleteWebhook({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return async (actor: Actor, id: number) => {
    const now = clock.now();
    await storage.asTenant(actor.tenantId, async ({ webhooks, audit }) => {
      if (!(await webhooks.deleteWebhook(id))) throw webhookNotFound(id);
      await audit.recordAudit({ tenantId: actor.tenantId, actor: actor.id, action: 'webhook.deleted', targetType: 'webhook', targetId: id, at: now });
    });
  };
}
