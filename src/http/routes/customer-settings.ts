import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { customerActor, requireTenantAdmin } from '../auth-hooks.ts';
import { tenantSettingsResponses } from '../response-schemas.ts';

/**
 * The tenant's settings: `allow_shared_device_keys` (default false) lets one key be certified for
 * several devices of the tenant. Reading is for every customer; changing needs `tenant-admin` and
 * is audited.
 */
export function customerSettingsRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get('/settings', { schema: { tags: ['tenant'], summary: "The tenant's settings", response: tenantSettingsResponses.one } }, async (request) =>
      useCases.getTenantSettings(customerActor(request)),
    );

    app.put<{ Body: { allow_shared_device_keys: boolean } }>(
      '/settings',
      {
        schema: {
          tags: ['tenant'],
          summary: "Change the tenant's settings (tenant-admin, audited)",
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['allow_shared_device_keys'],
            properties: {
              allow_shared_device_keys: { type: 'boolean', description: 'one key may be certified for several devices of the tenant (default false)' },
            },
          },
          response: tenantSettingsResponses.one,
        },
      },
      async (request) => useCases.putTenantSettings(requireTenantAdmin(request), request.body),
    );
  };
}
