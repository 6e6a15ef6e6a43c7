import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { webhookNotFound } from './create-webhook.ts';

/** The tenant's endpoints (never their secrets). */
export function createListWebhooks({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor) => ({ webhooks: await storage.asTenant(actor.tenantId, ({ webhooks }) => webhooks.listWebhooks()) });
}

export function createGetWebhook({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor, id: number) => {
    const webhook = await storage.asTenant(actor.tenantId, ({ webhooks }) => webhooks.findWebhook(id));
    if (!webhook) throw webhookNotFound(id);
    return webhook;
  };
}

/** The endpoint's latest deliveries with their state (attempts, next attempt, last error): what a receiver's owner debugs with. */
export function createListWebhookDeliveries({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor, id: number, limit: number) =>
    storage.asTenant(actor.tenantId, async ({ webhooks, outbox }) => {
      if (!(await webhooks.findWebhook(id))) throw webhookNotFound(id);
      return { deliveries: await outbox.listDeliveries(id, limit) };
    });
}
