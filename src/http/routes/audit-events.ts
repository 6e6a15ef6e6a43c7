import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { customerActor } from '../auth-hooks.ts';
import { certificateCursor, pageQuery } from '../schemas.ts';

interface AuditQuerystring {
  action?: string;
  target_type?: string;
  target_id?: string;
  actor?: string;
  tenant_id?: string;
  limit: number;
  cursor?: string;
}

const filters = {
  action: { type: 'string', minLength: 1, maxLength: 64, description: 'exact action, e.g. certificate.revoked' },
  target_type: { type: 'string', minLength: 1, maxLength: 64, description: 'device, certificate, alert, webhook, ...' },
  target_id: { type: 'string', minLength: 1, maxLength: 256 },
  actor: { type: 'string', minLength: 1, maxLength: 256, description: 'the token subject, or system:<task>' },
  ...pageQuery,
} as const;

const auditEvent = {
  type: 'object',
  required: ['id', 'tenant_id', 'actor', 'action', 'target_type', 'target_id', 'details', 'created_at'],
  properties: {
    id: { type: 'integer' },
    tenant_id: { type: 'string' },
    actor: { type: 'string' },
    action: { type: 'string' },
    target_type: { type: 'string' },
    target_id: { type: 'string' },
    details: { type: 'object', additionalProperties: true },
    created_at: { type: 'string', format: 'date-time' },
  },
} as const;

const auditPage = {
  200: {
    type: 'object',
    required: ['audit_events', 'limit', 'next_cursor'],
    properties: { audit_events: { type: 'array', items: auditEvent }, limit: { type: 'integer' }, next_cursor: { type: ['string', 'null'] } },
  },
} as const;

const input = (q: AuditQuerystring) => ({
  action: q.action,
  targetType: q.target_type,
  targetId: q.target_id,
  actor: q.actor,
  limit: q.limit,
  cursor: certificateCursor(q.cursor),
});

/** GET /audit-events: the tenant's audit log, newest first (keyset pages). */
export function customerAuditRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: AuditQuerystring }>(
      '/audit-events',
      {
        schema: {
          tags: ['audit'],
          summary: "The tenant's audit log, newest first; filter by action, target and actor",
          querystring: { type: 'object', additionalProperties: false, properties: filters },
          response: auditPage,
        },
      },
      async (request) => useCases.listAuditEvents.forTenant(customerActor(request).tenantId, input(request.query)),
    );
  };
}

/** GET /operator/audit-events: every tenant's audit log, with an optional tenant filter. */
export function operatorAuditRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: AuditQuerystring }>(
      '/audit-events',
      {
        schema: {
          tags: ['operator'],
          summary: 'The audit log of every tenant, newest first; filter by tenant, action, target and actor',
          querystring: { type: 'object', additionalProperties: false, properties: { ...filters, tenant_id: { type: 'string', minLength: 1, maxLength: 128 } } },
          response: auditPage,
        },
      },
      async (request) => {
        return useCases.listAuditEvents.forOperator({ ...input(request.query), tenantId: request.query.tenant_id });
      },
    );
  };
}
