import { randomBytes } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import { assertWebhookUrl } from '../domain/notification-policy.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** At most this many endpoints per tenant (every alert event is sent to each). */
export const MAX_WEBHOOKS_PER_TENANT = 20;

export const SECRET_WARNING = 'Save the secret now -- it will NOT be shown again. It signs every delivery (X-Certfleet-Signature: sha256=HMAC-SHA256(secret, raw body)).';

/** 32 random bytes: the HMAC key of one endpoint. */
export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64url')}`;

export const webhookNotFound = (id: number) => new AppError('WEBHOOK_NOT_FOUND', `notification webhook ${id} not found`);

/** Registers an endpoint for the tenant's alert events; the answer carries its secret, the only time it is shown. */
export function createCreateWebhook({ storage, clock, secrets, settings }: Pick<AppDeps, 'storage' | 'clock' | 'secrets' | 'settings'>) {
  return async (actor: Actor, input: { url: string; description?: string | null; enabled?: boolean }) => {
    const url = assertWebhookUrl(input.url, { allowPrivateNetworks: settings.webhookAllowPrivateNetworks });
    const secret = newWebhookSecret();
    const now = clock.now();
    const webhook = await storage.asTenant(actor.tenantId, async ({ webhooks, audit }) => {
      if ((await webhooks.countWebhooksForCreate(actor.tenantId)) >= MAX_WEBHOOKS_PER_TENANT) {
        throw new AppError('VALIDATION_FAILED', `a tenant can register at most ${MAX_WEBHOOKS_PER_TENANT} notification webhooks`);
      }
      const created = await webhooks.insertWebhook({
        tenantId: actor.tenantId,
        url,
        description: input.description ?? null,
        enabled: input.enabled ?? true,
        secret: (id) => secrets.seal(secret, { tenantId: actor.tenantId, webhookId: id }),
        createdBy: actor.id,
        now,
      });
      await audit.recordAudit({ tenantId: actor.tenantId, actor: actor.id, action: 'webhook.created', targetType: 'webhook', targetId: created.id, details: { url }, at: now });
      return created;
    });
    return { webhook, secret, warning: SECRET_WARNING };
  };
}
