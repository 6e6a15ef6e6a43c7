import type { FastifyInstance } from 'fastify';
import { DEVICE_ID_SOURCES, MAX_ADMITTED_SERIALS, MAX_CN_PATTERNS, MAX_DEVICE_ID_REGEX_LENGTH, MAX_PATTERN_LENGTH, MAX_APPROVAL_TIMEOUT_MS, MIN_APPROVAL_TIMEOUT_MS } from '../../domain/provisioning-policy.ts';
import { MAX_WEBHOOK_URL_LENGTH } from '../../domain/notification-policy.ts';
import type { ClaimOnboarding } from '../../renewal/claim-onboarding.ts';
import { customerActor, requireTenantAdmin } from '../auth-hooks.ts';
import { claimResponses } from '../response-schemas.ts';
import { noBody } from '../schemas.ts';
import { idParam } from './alert-schemas.ts';

type IdParams = { id: number };
const PEM_MAX = 64 * 1024;
const tags = ['onboarding'];

const policyBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    admit: {
      type: 'object',
      additionalProperties: false,
      properties: {
        cn_patterns: { type: 'array', maxItems: MAX_CN_PATTERNS, items: { type: 'string', minLength: 1, maxLength: MAX_PATTERN_LENGTH } },
        serials: { type: 'array', maxItems: MAX_ADMITTED_SERIALS, items: { type: 'string', minLength: 1, maxLength: 100 } },
      },
    },
    device_id: {
      type: 'object',
      additionalProperties: false,
      properties: {
        from: { type: 'string', enum: [...DEVICE_ID_SOURCES] },
        pattern: { type: ['string', 'null'], minLength: 1, maxLength: MAX_DEVICE_ID_REGEX_LENGTH },
      },
    },
    site_id: { type: ['string', 'null'], minLength: 1, maxLength: 128 },
    approval_webhook: {
      type: ['object', 'null'],
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', minLength: 1, maxLength: MAX_WEBHOOK_URL_LENGTH },
        timeout_ms: { type: 'integer', minimum: MIN_APPROVAL_TIMEOUT_MS, maximum: MAX_APPROVAL_TIMEOUT_MS },
      },
    },
    rotate_approval_secret: { type: 'boolean' },
  },
} as const;

/**
 * Factory (claim) onboarding: the tenant's claim CAs (manufacturer CA certificates, never their
 * keys) and provisioning policy. Reading is for every customer; changes need `tenant-admin` and
 * are audited. Devices then enroll at the EST listener: POST /.well-known/est/<tenant>/simpleenroll.
 */
export function customerClaimRoutes(claims: ClaimOnboarding) {
  return async (app: FastifyInstance) => {
    app.get('/claim-cas', { schema: { tags, summary: "The tenant's claim CAs (manufacturer CA certificates whose claim certificates may onboard devices)", response: claimResponses.list } }, async (request) =>
      claims.listClaimCas(customerActor(request)),
    );

    app.post<{ Body: { ca_cert_pem: string; name?: string | null; crl_pem?: string | null } }>(
      '/claim-cas',
      {
        schema: {
          tags,
          summary: "Register a manufacturer's CA certificate (no key; tenant-admin, audited), optionally with its CRL",
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['ca_cert_pem'],
            properties: {
              ca_cert_pem: { type: 'string', minLength: 1, maxLength: PEM_MAX, description: 'one PEM CA certificate (basicConstraints cA)' },
              name: { type: ['string', 'null'], maxLength: 200 },
              crl_pem: { type: ['string', 'null'], minLength: 1, maxLength: 16 * 1024 * 1024, description: 'the CA\'s CRL (PEM X509 CRL), signed by it' },
            },
          },
          response: claimResponses.created,
        },
      },
      async (request, reply) => reply.code(201).send(await claims.addClaimCa(requireTenantAdmin(request), request.body)),
    );

    app.get<{ Params: IdParams }>(
      '/claim-cas/:id',
      { schema: { tags, summary: 'A claim CA with its certificate', params: idParam, response: claimResponses.oneWithPem } },
      async (request) => claims.getClaimCa(customerActor(request), request.params.id),
    );

    app.put<{ Params: IdParams; Body: { crl_pem: string } }>(
      '/claim-cas/:id/crl',
      {
        schema: {
          tags,
          summary: "Replace the claim CA's CRL (signed by it; tenant-admin, audited): claim certificates on it are refused",
          params: idParam,
          body: { type: 'object', additionalProperties: false, required: ['crl_pem'], properties: { crl_pem: { type: 'string', minLength: 1, maxLength: 16 * 1024 * 1024 } } },
          response: claimResponses.one,
        },
      },
      async (request) => claims.putClaimCaCrl(requireTenantAdmin(request), request.params.id, request.body),
    );

    app.delete<{ Params: IdParams }>(
      '/claim-cas/:id',
      { schema: { tags, summary: 'Remove a claim CA (tenant-admin, audited): its claim certificates onboard no more devices', params: idParam, body: noBody, response: claimResponses.deleted } },
      async (request, reply) => {
        await claims.deleteClaimCa(requireTenantAdmin(request), request.params.id);
        return reply.code(204).send();
      },
    );

    app.get('/provisioning-policy', { schema: { tags, summary: "The tenant's provisioning policy (the default when none was put)", response: claimResponses.policy } }, async (request) =>
      claims.getProvisioningPolicy(customerActor(request)),
    );

    app.put<{ Body: Parameters<ClaimOnboarding['putProvisioningPolicy']>[1] }>(
      '/provisioning-policy',
      {
        schema: {
          tags,
          summary: 'Replace the provisioning policy (tenant-admin, audited): admitted claims, device id derivation, site, approval webhook',
          body: policyBody,
          response: claimResponses.policyPut,
        },
      },
      async (request) => claims.putProvisioningPolicy(requireTenantAdmin(request), request.body),
    );
  };
}
