import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { DEFAULT_KEY_TYPE, MAX_ROTATION_GRACE_HOURS, type KeyType } from '../../domain/certificate.ts';
import { AppError } from '../../domain/errors.ts';
import { customerActor } from '../auth-hooks.ts';
import { deviceIdParam, keyType, noBody, pemString, validityDays } from '../schemas.ts';
import { revocationReasonInput, rotationResponses } from '../response-schemas.ts';

type DeviceParams = { device_id: string };
type RotateBody = { validity_days?: number; revoke_old_after_hours?: number | null; key_type?: KeyType; csr_pem?: string } | null | undefined;

const rotateBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    validity_days: validityDays,
    revoke_old_after_hours: {
      type: ['integer', 'null'],
      minimum: 1,
      maximum: MAX_ROTATION_GRACE_HOURS,
      description: 'Grace period before the old certificates are revoked; null or absent: ROTATION_GRACE_HOURS (default 24)',
    },
    key_type: { ...keyType, description: 'Generate the new key here (returned once); excludes csr_pem' },
    csr_pem: { ...pemString, description: "The device's own new key as a PKCS#10 CSR (no private key is returned); excludes key_type" },
  },
} as const;

/** Tenant-scoped rotation routes; registered next to customerRoutes under /api/v1/customer and /customer. */
export function customerRotationRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.post<{ Params: DeviceParams; Body: RotateBody }>(
      '/devices/:device_id/certificates/rotate',
      {
        schema: {
          tags: ['rotation'],
          summary: 'Issue a new certificate; the ACTIVE ones stay valid for a grace period, then are revoked (superseded)',
          description:
            'One pending rotation per device: while one is pending the answer is 409 ROTATION_PENDING (problem+json) with the pending rotation in `pending_rotation`, and nothing is issued.',
          params: deviceIdParam,
          body: rotateBody,
          response: rotationResponses.started,
        },
      },
      async (request, reply) => {
        const body = request.body ?? {};
        if (body.key_type !== undefined && body.csr_pem !== undefined) {
          throw new AppError('VALIDATION_FAILED', 'body: key_type and csr_pem are mutually exclusive (csr_pem: the device keeps its own key)', {
            errors: [{ location: 'body', field: 'csr_pem', message: 'must not be sent together with key_type' }],
          });
        }
        const result = await useCases.rotateCertificate(customerActor(request), request.params.device_id, {
          validityDays: body.validity_days,
          revokeOldAfterHours: body.revoke_old_after_hours ?? null,
          key: body.csr_pem !== undefined ? { kind: 'csr', csrPem: body.csr_pem } : { kind: 'generate', keyType: body.key_type ?? DEFAULT_KEY_TYPE },
        });
        return reply.code(201).send(result);
      },
    );

    app.post<{ Params: DeviceParams }>(
      '/devices/:device_id/certificates/rotate/confirm',
      {
        schema: {
          tags: ['rotation'],
          summary: 'The device uses its new certificate: revoke the old certificates of the pending rotation now',
          params: deviceIdParam,
          body: noBody,
          response: rotationResponses.confirmed,
        },
      },
      async (request) => useCases.confirmRotation(customerActor(request), request.params.device_id),
    );

    app.post<{ Params: DeviceParams; Body: { reason?: string } | null | undefined }>(
      '/devices/:device_id/certificates/rotate/cancel',
      {
        schema: {
          tags: ['rotation'],
          summary: 'The new certificate never reached the device: revoke it and clear its schedule, the old certificates stay valid',
          description:
            'The answer lists `active_certificates`, the certificates that stay valid. When the scheduled revocation won the race (the old certificates are revoked): 409 ROTATION_COMPLETED with `active_certificates`; nothing pending: 404 NO_PENDING_ROTATION.',
          params: deviceIdParam,
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: { reason: revocationReasonInput('Revocation reason of the new certificate (default cessationOfOperation)') },
          },
          response: rotationResponses.cancelled,
        },
      },
      async (request) => useCases.cancelRotation(customerActor(request), request.params.device_id, request.body?.reason),
    );

    app.get<{ Params: DeviceParams }>(
      '/devices/:device_id/certificates/rotation',
      { schema: { tags: ['rotation'], summary: "The device's pending rotation (404 NO_PENDING_ROTATION when none)", params: deviceIdParam, response: rotationResponses.pending } },
      async (request) => useCases.getRotation(customerActor(request), request.params.device_id),
    );
  };
}
