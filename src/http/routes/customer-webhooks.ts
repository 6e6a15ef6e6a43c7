import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { MAX_WEBHOOK_URL_LENGTH } from '../../domain/notification-policy.ts';
import type { Actor } from '../../app/ports.ts';
import { SYSTEM_TENANT } from '../../domain/alert.ts';
import { customerActor, operatorPrincipal } from '../auth-hooks.ts';
import { noBody } from '../schemas.ts';
import { webhookResponses } from '../response-schemas.ts';
import { idParam } from './alert-schemas.ts';

type IdParams = { id: number };
type WebhookBody = { url: string; description?: string | null; enabled?: boolean };

const webhookProperties = {
  url: { type: 'string', minLength: 1, maxLength: MAX_WEBHOOK_URL_LENGTH },
  description: { type: ['string', 'null'], maxLength: 200 },
  enabled: { type: 'boolean' },
} as const;

/**
 * Webhook endpoints for alert events (alert.opened, alert.escalated,
 * alert.closed): each delivery is JSON signed with the endpoint's secret
 * (X-Certfleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>). The secret is in the
 * create (and rotate-secret) answer only.
 */
export function customerWebhookRoutes(useCases: UseCases) {
  return webhookRoutes(useCases, customerActor, { tag: 'notifications', whose: "the tenant's" });
}

/** The operator's own endpoints (tenant `__system__`): they receive the system alerts (CRL_STALE, BROKER_RELOAD_FAILING, CA_EXPIRING). */
export function operatorWebhookRoutes(useCases: UseCases) {
  const operatorActor = (request: FastifyRequest): Actor => ({ id: operatorPrincipal(request).subject, tenantId: SYSTEM_TENANT });
  return webhookRoutes(useCases, operatorActor, { tag: 'operator', whose: "the operators' (system alerts)" });
}

function webhookRoutes(useCases: UseCases, actorOf: (request: FastifyRequest) => Actor, docs: { tag: string; whose: string }) {
  const tags = [docs.tag];
  return async (app: FastifyInstance) => {
    app.post<{ Body: WebhookBody }>(
      '/notification-webhooks',
      {
        schema: {
          tags,
          summary: 'Register a webhook endpoint (http or https); the answer holds its signing secret, shown this once',
          body: { type: 'object', additionalProperties: false, required: ['url'], properties: webhookProperties },
          response: webhookResponses.created,
        },
      },
      async (request, reply) => reply.code(201).send(await useCases.createWebhook(actorOf(request), request.body)),
    );

    app.get('/notification-webhooks', { schema: { tags, summary: `List ${docs.whose} webhook endpoints (without secrets)`, response: webhookResponses.list } }, async (request) =>
      useCases.listWebhooks(actorOf(request)),
    );

    app.get<{ Params: IdParams }>(
      '/notification-webhooks/:id',
      { schema: { tags, summary: 'Get a webhook endpoint (without its secret)', params: idParam, response: webhookResponses.one } },
      async (request) => ({ webhook: await useCases.getWebhook(actorOf(request), request.params.id) }),
    );

    app.patch<{ Params: IdParams; Body: Partial<WebhookBody> }>(
      '/notification-webhooks/:id',
      {
        schema: {
          tags,
          summary: 'Change url, description or enabled',
          params: idParam,
          body: { type: 'object', additionalProperties: false, minProperties: 1, properties: webhookProperties },
          response: webhookResponses.one,
        },
      },
      async (request) => useCases.updateWebhook(actorOf(request), request.params.id, request.body),
    );

    app.delete<{ Params: IdParams }>(
      '/notification-webhooks/:id',
      { schema: { tags, summary: 'Delete a webhook endpoint and its queued deliveries', params: idParam, body: noBody, response: webhookResponses.deleted } },
      async (request, reply) => {
        await useCases.deleteWebhook(actorOf(request), request.params.id);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: IdParams }>(
      '/notification-webhooks/:id/rotate-secret',
      { schema: { tags, summary: 'Replace the signing secret; the new one is shown this once', params: idParam, body: noBody, response: webhookResponses.secretRotated } },
      async (request) => useCases.rotateWebhookSecret(actorOf(request), request.params.id),
    );

    app.get<{ Params: IdParams; Querystring: { limit: number } }>(
      '/notification-webhooks/:id/deliveries',
      {
        schema: {
          tags,
          summary: 'The latest deliveries to this endpoint: status, attempts, next attempt, last error',
          params: idParam,
          querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 } } },
          response: webhookResponses.deliveries,
        },
      },
      async (request) => useCases.listWebhookDeliveries(actorOf(request), request.params.id, request.query.limit),
    );
  };
}
