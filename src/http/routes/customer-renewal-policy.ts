import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { MAX_VALIDITY_DAYS } from '../../domain/certificate.ts';
import { MAX_RECOVERY_WINDOW_DAYS, MAX_RENEWAL_WINDOW, MIN_RENEWAL_WINDOW, type RenewalPolicy } from '../../domain/renewal-policy.ts';
import { customerActor, requireTenantAdmin } from '../auth-hooks.ts';
import { renewalPolicyResponses } from '../response-schemas.ts';

/**
 * The tenant's renewal policy: validity of issued device certificates, renewal window and jitter
 * (when certfleet advises a device to renew), recovery window (renewal with an expired
 * certificate; off by default). Reading is for every customer; changing needs `tenant-admin` and
 * is audited (`renewal_policy.updated`). Values out of range: 422 VALIDATION_FAILED.
 */
export function customerRenewalPolicyRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get('/renewal-policy', { schema: { tags: ['devices'], summary: "The tenant's renewal policy (validity, renewal window, jitter, recovery window)", response: renewalPolicyResponses.one } }, async (request) =>
      useCases.getRenewalPolicy(customerActor(request)),
    );

    app.put<{ Body: Partial<RenewalPolicy> }>(
      '/renewal-policy',
      {
        schema: {
          tags: ['devices'],
          summary: 'Change the renewal policy (tenant-admin, audited); fields left out keep their value',
          body: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              validity_days: { type: 'integer', minimum: 1, maximum: MAX_VALIDITY_DAYS, description: 'lifetime of issued device certificates when a request names none' },
              renewal_window: { type: 'number', minimum: MIN_RENEWAL_WINDOW, maximum: MAX_RENEWAL_WINDOW, description: 'fraction of the lifetime, at its end, in which devices renew (0.33: the last third)' },
              jitter: { type: 'number', minimum: 0, maximum: 1, description: "fraction of the window over which each certificate's start is spread (deterministic per certificate)" },
              recovery_window_days: { type: 'integer', minimum: 0, maximum: MAX_RECOVERY_WINDOW_DAYS, description: 'days after notAfter in which an expired certificate may still renew (0: off)' },
              revoke_superseded: {
                type: 'boolean',
                description: 'true (default): a device renewal revokes the certificate it replaced (superseded) once the device uses the new one or the grace period ends; false: the replaced certificate is left to expire and never listed on the CRL (recommended with short validity)',
              },
            },
          },
          response: renewalPolicyResponses.one,
        },
      },
      async (request) => useCases.putRenewalPolicy(requireTenantAdmin(request), request.body),
    );
  };
}
