import type { FastifyInstance } from 'fastify';
import type { CrlStatus } from '../../app/get-crl-status.ts';
import type { UseCases } from '../../app/use-cases.ts';
import { customerActor } from '../auth-hooks.ts';

const expirySummary = {
  200: {
    type: 'object',
    required: ['generated_at', 'windows'],
    properties: {
      generated_at: { type: 'string', format: 'date-time' },
      windows: {
        type: 'array',
        items: { type: 'object', required: ['days', 'certificates'], properties: { days: { type: 'integer' }, certificates: { type: 'integer' } } },
      },
    },
  },
} as const;

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

const crlStatus = {
  200: {
    type: 'object',
    required: ['crl_number', 'entries', 'this_update', 'next_update', 'sha256', 'bytes', 'published_at', 'pem_url', 'der_url'],
    properties: {
      crl_number: { type: 'string', description: 'decimal (may exceed 2^53)' },
      entries: nullable('integer'),
      this_update: nullable('string', { format: 'date-time' }),
      next_update: nullable('string', { format: 'date-time' }),
      sha256: nullable('string'),
      bytes: nullable('integer'),
      published_at: nullable('string', { format: 'date-time' }),
      pem_url: { type: 'string' },
      der_url: { type: 'string' },
    },
  },
} as const;

const withLinks = (status: CrlStatus) => ({ ...status, pem_url: '/pki/crl.pem', der_url: '/pki/crl' });

/** The console's overview numbers for a tenant: expiry windows and the CRL's status. */
export function customerOverviewRoutes(useCases: UseCases, getCrlStatus: () => Promise<CrlStatus>) {
  return async (app: FastifyInstance) => {
    app.get(
      '/expiry-summary',
      { schema: { tags: ['certificates'], summary: 'How many ACTIVE certificates expire within 7, 30 and 90 days (cumulative)', response: expirySummary } },
      async (request) => useCases.summarizeExpiry.forTenant(customerActor(request).tenantId),
    );
    app.get(
      '/crl/status',
      { schema: { tags: ['certificates'], summary: 'The latest CRL: number, entries, this and next update, download URLs', response: crlStatus } },
      async (request) => {
        customerActor(request);
        return withLinks(await getCrlStatus());
      },
    );
  };
}

export function operatorOverviewRoutes(useCases: UseCases, getCrlStatus: () => Promise<CrlStatus>) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: { tenant_id?: string } }>(
      '/expiry-summary',
      {
        schema: {
          tags: ['operator'],
          summary: 'Certificates expiring within 7, 30 and 90 days, of every tenant or one',
          querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: { type: 'string', minLength: 1, maxLength: 128 } } },
          response: expirySummary,
        },
      },
      async (request) => {
        return useCases.summarizeExpiry.forOperator(request.query.tenant_id);
      },
    );
    app.get(
      '/crl/status',
      { schema: { tags: ['operator'], summary: 'The latest CRL: number, entries, this and next update, download URLs', response: crlStatus } },
      async (request) => {
        return withLinks(await getCrlStatus());
      },
    );
  };
}
