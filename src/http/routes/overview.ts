import type { FastifyInstance } from 'fastify';
import { CA_KINDS, PUBLISHED_CA_STATUSES } from '../../domain/ca.ts';
import { CERTIFICATE_STATUSES } from '../../domain/certificate.ts';
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

const counts = (keys: readonly string[]) => ({ type: 'object', required: [...keys], properties: Object.fromEntries(keys.map((k) => [k, { type: 'integer' }])) });

const fleetOverview = {
  200: {
    type: 'object',
    required: ['generated_at', 'tenants', 'expiring_per_week', 'overdue', 'recent_revocations', 'crl', 'crls'],
    properties: {
      generated_at: { type: 'string', format: 'date-time' },
      tenants: {
        type: 'array',
        items: { type: 'object', required: ['tenant_id', 'devices', 'certificates'], properties: { tenant_id: { type: 'string' }, devices: { type: 'integer' }, certificates: counts(CERTIFICATE_STATUSES) } },
      },
      expiring_per_week: {
        type: 'array',
        description: 'ACTIVE certificates expiring in each of the next 13 weeks (week_start: now + 7 days × i)',
        items: { type: 'object', required: ['week_start', 'certificates'], properties: { week_start: { type: 'string', format: 'date-time' }, certificates: { type: 'integer' } } },
      },
      overdue: { type: 'integer', description: 'ACTIVE certificates past not_after, not yet marked EXPIRED' },
      recent_revocations: {
        type: 'array',
        items: {
          type: 'object',
          required: ['id', 'tenant_id', 'device_id', 'revoked_at', 'revoked_reason'],
          properties: { id: { type: 'integer' }, tenant_id: { type: 'string' }, device_id: { type: 'string' }, revoked_at: { type: 'string', format: 'date-time' }, revoked_reason: nullable('string') },
        },
      },
      crl: {
        type: 'object',
        description: "the default (global active) CA's CRL, /pki/crl",
        required: ['crl_number', 'this_update', 'age_seconds'],
        properties: { crl_number: { type: 'string' }, this_update: nullable('string', { format: 'date-time' }), age_seconds: nullable('integer') },
      },
      crls: {
        type: 'array',
        description: 'the latest CRL of every CA whose CRL is published (staged, active, retiring; roots included), each with its own number series',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['ca_id', 'subject', 'status', 'kind', 'tenant_id', 'crl_number', 'this_update', 'next_update', 'age_seconds', 'entries'],
          properties: {
            ca_id: { type: 'string' },
            subject: { type: 'string' },
            status: { type: 'string', enum: [...PUBLISHED_CA_STATUSES] },
            kind: { type: 'string', enum: [...CA_KINDS] },
            tenant_id: nullable('string'),
            crl_number: nullable('string', { description: 'decimal; null: none stored yet' }),
            this_update: nullable('string', { format: 'date-time' }),
            next_update: nullable('string', { format: 'date-time' }),
            age_seconds: nullable('integer'),
            entries: nullable('integer'),
          },
        },
      },
    },
  },
} as const;

export function operatorOverviewRoutes(useCases: UseCases, getCrlStatus: () => Promise<CrlStatus>) {
  return async (app: FastifyInstance) => {
    app.get(
      '/fleet-overview',
      {
        schema: {
          tags: ['operator'],
          summary: "Fleet overview: devices and certificates by tenant and status, expiring per week for the next quarter, recent revocations, each CA's CRL number and age",
          response: fleetOverview,
        },
      },
      async () => {
        const [overview, crl] = await Promise.all([useCases.fleetOverview.forOperator(), getCrlStatus()]);
        const age = crl.this_update ? Math.max(0, Math.round((Date.parse(overview.generated_at) - Date.parse(crl.this_update)) / 1000)) : null;
        return { ...overview, crl: { crl_number: crl.crl_number, this_update: crl.this_update, age_seconds: age } };
      },
    );
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
      async () => {
        return withLinks(await getCrlStatus());
      },
    );
  };
}
