import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { BROKER_GRANT_ACCESS, MAX_BROKER_GRANTS, MAX_GRANT_FILTER_LENGTH, type BrokerGrant } from '../../domain/broker-acl.ts';
import { customerActor, requireTenantAdmin } from '../auth-hooks.ts';
import { brokerGrantResponses } from '../response-schemas.ts';

/**
 * What every device of the tenant may use on the broker besides its own
 * `tenant/<tenant>/device/<device>/#`: filters relative to `tenant/<tenant>/` (e.g. `broadcast/#`
 * read). Reading is for every customer; replacing needs `tenant-admin` and is audited.
 */
export function customerBrokerGrantRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get('/broker-grants', { schema: { tags: ['broker'], summary: "The tenant's broker grants (topics every device of the tenant may use)", response: brokerGrantResponses.list } }, async (request) =>
      useCases.getBrokerGrants(customerActor(request)),
    );

    app.put<{ Body: { grants: BrokerGrant[] } }>(
      '/broker-grants',
      {
        schema: {
          tags: ['broker'],
          summary: 'Replace the broker grants (tenant-admin); the broker ACL follows',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['grants'],
            properties: {
              grants: {
                type: 'array',
                maxItems: MAX_BROKER_GRANTS,
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['filter', 'access'],
                  properties: {
                    filter: { type: 'string', minLength: 1, maxLength: MAX_GRANT_FILTER_LENGTH, description: 'relative to tenant/<tenant>/; first level not device, + or #; no $' },
                    access: { type: 'string', enum: [...BROKER_GRANT_ACCESS] },
                  },
                },
              },
            },
          },
          response: brokerGrantResponses.list,
        },
      },
      async (request) => useCases.putBrokerGrants(requireTenantAdmin(request), request.body),
    );
  };
}
