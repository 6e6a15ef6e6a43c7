import type { FastifyInstance } from 'fastify';
import type { DeviceRenewal } from '../../renewal/device-renewal.ts';
import { customerActor, requireRole } from '../auth-hooks.ts';
import { deviceIdParam } from '../schemas.ts';
import { deviceResponses } from '../response-schemas.ts';

type DeviceParams = { device_id: string };
type TokenBody = { expires_in_hours?: number } | null | undefined;

const DEFAULT_EXPIRY_HOURS = 24;

/**
 * One-time secrets for a device's first EST enrollment (POST /.well-known/est/simpleenroll).
 * A token is a device credential: only `tenant-admin` may mint one, and each is audited.
 */
export function customerEnrollmentRoutes(renewal: DeviceRenewal) {
  return async (app: FastifyInstance) => {
    app.post<{ Params: DeviceParams; Body: TokenBody }>(
      '/devices/:device_id/enrollment-tokens',
      {
        onRequest: requireRole('tenant-admin'),
        schema: {
          tags: ['devices'],
          summary: 'Create a one-time EST enrollment secret for the device (shown once, expiring, used once; role tenant-admin, audited)',
          params: deviceIdParam,
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: { expires_in_hours: { type: 'integer', minimum: 1, maximum: 720, description: `default ${DEFAULT_EXPIRY_HOURS}` } },
          },
          response: deviceResponses.enrollmentToken,
        },
      },
      async (request, reply) => {
        const result = await renewal.createEnrollmentToken(customerActor(request), request.params.device_id, {
          expiresInHours: request.body?.expires_in_hours ?? DEFAULT_EXPIRY_HOURS,
        });
        return reply.code(201).send(result);
      },
    );
  };
}
