import { findWebhook, listWebhooks } from '../storage/repos/webhooks-repo.ts';
import { listDeliveries } from '../storage/repos/outbox-repo.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { webhookNotFound } from './create-webhook.ts';

/** The tenant's endpoints (never their secrets). */
export function createListWebhooks({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor) => ({ webhooks: await db.asTenant(actor.tenantId, (tx) => listWebhooks(tx)) });
}

export function createGetWebhook({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor, id: number) => {
    const webhook = await db.asTenant(actor.tenantId, (tx) => findWebhook(tx, id));
    if (!webhook) throw webhookNotFound(id);
    return webhook;
  };
}

/** The endpoint's latest deliveries with their state (attempts, next attempt, last error): what a receiver's owner debugs with. */
export function createListWebhookDeliveries({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor, id: number, limit: number) =>
    db.asTenant(actor.tenantId, async (tx) => {
      if (!(await findWebhook(tx, id))) throw webhookNotFound(id);
      return { deliveries: await listDeliveries(tx, id, limit) };
    });
}
