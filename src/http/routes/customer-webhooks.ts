import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { MAX_WEBHOOK_URL_LENGTH } from '../../domain/notification-policy.ts';
import { customerActor } from '../auth-hooks.ts';
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
 * Per-tenant webhook endpoints for alert events (alert.opened, alert.escalated,
 * alert.closed): each delivery is JSON signed with the endpoint's secret
 * (X-Certfleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>). The secret is in the
 * create (and rotate-secret) answer only.
 */
export function customerWebhookRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: WebhookBody }>(
      '/notification-webhooks',
      {
        schema: {
          tags: ['notifications'],
          summary: 'Register a webhook endpoint (http or https); the answer holds its signing secret, shown this once',
          body: { type: 'object', additionalProperties: false, required: ['url'], properties: webhookProperties },
          response: webhookResponses.created,
        },
      },
      async (request, reply) => reply.code(201).send(await useCases.createWebhook(customerActor(request), request.body)),
    );

    app.get('/notification-webhooks', { schema: { tags: ['notifications'], summary: "List the tenant's webhook endpoints (without secrets)", response: webhookResponses.list } }, async (request) =>
      useCases.listWebhooks(customerActor(request)),
    );

    app.get<{ Params: IdParams }>(
      '/notification-webhooks/:id',
      { schema: { tags: ['notifications'], summary: 'Get a webhook endpoint (without its secret)', params: idParam, response: webhookResponses.one } },
      async (request) => ({ webhook: await useCases.getWebhook(customerActor(request), request.params.id) }),
    );

    app.patch<{ Params: IdParams; Body: Partial<WebhookBody> }>(
      '/notification-webhooks/:id',
      {
        schema: {
          tags: ['notifications'],
          summary: 'Change url, description or enabled',
          params: idParam,
          body: { type: 'object', additionalProperties: false, minProperties: 1, properties: webhookProperties },
          response: webhookResponses.one,
        },
      },
      async (request) => useCases.updateWebhook(customerActor(request), request.params.id, request.body),
    );

    app.delete<{ Params: IdParams }>(
      '/notification-webhooks/:id',
      { schema: { tags: ['notifications'], summary: 'Delete a webhook endpoint and its queued deliveries', params: idParam, body: noBody, response: webhookResponses.deleted } },
      async (request, reply) => {
        await useCases.deleteWebhook(customerActor(request), request.params.id);
        return reply.code(204).send();
      },
    );

    app.post<{ Params: IdParams }>(
      '/notification-webhooks/:id/rotate-secret',
      { schema: { tags: ['notifications'], summary: 'Replace the signing secret; the new one is shown this once', params: idParam, body: noBody, response: webhookResponses.secretRotated } },
      async (request) => useCases.rotateWebhookSecret(customerActor(request), request.params.id),
    );

    app.get<{ Params: IdParams; Querystring: { limit: number } }>(
      '/notification-webhooks/:id/deliveries',
      {
        schema: {
          tags: ['notifications'],
          summary: 'The latest deliveries to this endpoint: status, attempts, next attempt, last error',
          params: idParam,
          querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 } } },
          response: webhookResponses.deliveries,
        },
      },
      async (request) => useCases.listWebhookDeliveries(customerActor(request), request.params.id, request.query.limit),
    );
  };
}
