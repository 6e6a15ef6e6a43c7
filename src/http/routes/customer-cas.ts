/**
 * GET /api/v1/customer/cas (read-only): the Device CAs that issued the tenant's certificates and the
 * one that signs them now, with the tenant's active certificates under each. The console's
 * issuing-CA picker (device search, certificate filters) reads it; the CA lifecycle stays the
 * operator's (/api/v1/operator/cas).
 */
import type { FastifyInstance } from 'fastify';
import type { CaManagement } from '../../app/manage-cas.ts';
import { CA_STATUSES } from '../../domain/ca.ts';
import { customerActor } from '../auth-hooks.ts';

const tenantCa = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'subject', 'status', 'tenant_id', 'not_before', 'not_after', 'signs_new_certificates', 'active_certificates'],
  properties: {
    id: { type: 'string' },
    subject: { type: 'string' },
    status: { type: 'string', enum: [...CA_STATUSES] },
    tenant_id: { type: ['string', 'null'], description: "null: the global scope; else the tenant's own CA" },
    not_before: { type: 'string', format: 'date-time' },
    not_after: { type: 'string', format: 'date-time' },
    signs_new_certificates: { type: 'boolean', description: "the CA that signs the tenant's new certificates and renewals now" },
    active_certificates: { type: 'integer', description: "the tenant's unexpired ACTIVE certificates it signed" },
  },
} as const;

export function customerCaRoutes(cas: Pick<CaManagement, 'listForTenant'>) {
  return async (app: FastifyInstance) => {
    app.get(
      '/cas',
      {
        schema: {
          tags: ['certificates'],
          summary: "The Device CAs that hold the tenant's active certificates, and the one that signs its new certificates (read-only; certificates name theirs in ca_id)",
          response: { 200: { type: 'object', additionalProperties: false, required: ['cas'], properties: { cas: { type: 'array', items: tenantCa } } } },
        },
      },
      async (request) => ({ cas: await cas.listForTenant(customerActor(request).tenantId) }),
    );
  };
}
