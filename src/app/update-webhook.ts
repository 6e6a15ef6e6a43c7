import { assertWebhookUrl } from '../domain/notification-policy.ts';
import { newWebhookSecret, SECRET_WARNING, webhookNotFound } from './create-webhook.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** Changes url, description or enabled (a disabled endpoint keeps its queued deliveries until enabled again). */
export function createUpdateWebhook({ storage, clock, settings }: Pick<AppDeps, 'storage' | 'clock' | 'settings'>) {
  return async (actor: Actor, id: number, input: { url?: string; description?: string | null; enabled?: boolean }) => {
    const allowPrivateNetworks = settings.webhookAllowPrivateNetworks;
    const changes = { ...input, ...(input.url !== undefined ? { url: assertWebhookUrl(input.url, { allowPrivateNetworks }) } : {}) };
    const now = clock.now();
    const webhook = await storage.asTenant(actor.tenantId, async ({ webhooks, audit }) => {
      const updated = await webhooks.updateWebhook(id, changes, now);
      if (!updated) throw webhookNotFound(id);
      await audit.recordAudit({ tenantId: actor.tenantId, actor: actor.id, action: 'webhook.updated', targetType: 'webhook', targetId: id, details: { changed: Object.keys(input) }, at: now });
      return updated;
    });
    return { webhook };
  };
}

/** A new secret, shown once; deliveries not yet sent are signed with it. */
export function createRotateWebhookSecret({ storage, clock, secrets }: Pick<AppDeps, 'storage' | 'clock' | 'secrets'>) {
  return async (actor: Actor, id: number) => {
    const secret = newWebhookSecret();
    const now = clock.now();
    const webhook = await storage.asTenant(actor.tenantId, async ({ webhooks, audit }) => {
      const updated = await webhooks.updateWebhook(id, { secret: secrets.seal(secret, { tenantId: actor.tenantId, webhookId: id }) }, now);
      if (!updated) throw webhookNotFound(id);
      await audit.recordAudit({ tenantId: actor.tenantId, actor: actor.id, action: 'webhook.secret_rotated', targetType: 'webhook', targetId: id, at: now });
      return updated;
    });
    return { webhook, secret, warning: SECRET_WARNING };
  };
}
