import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import type { KeyType } from '../../domain/certificate.ts';
import { AppError } from '../../domain/errors.ts';
import { customerActor } from '../auth-hooks.ts';
import { keysetListDescription, certificateIdParam, certificateListQuery, toListCertificatesInput, type CertificateListQuerystring, deviceIdParam, deviceListQuery, keyType, toListDevicesInput, type DeviceListQuerystring, pemString, validityDays } from '../schemas.ts';
import { certificateResponses, deviceResponses, revocationReasonInput } from '../response-schemas.ts';

type DeviceParams = { device_id: string };
type IdParams = { id: number };

/** Tenant-scoped routes; registered under /api/v1/customer and /customer. */
export function customerRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: { device_id: string; site_id?: string | null } }>(
      '/devices',
      {
        schema: {
          tags: ['devices'],
          summary: 'Register a device',
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['device_id'],
            properties: { device_id: { type: 'string' }, site_id: { type: ['string', 'null'], maxLength: 128 } },
          },
          response: deviceResponses.registered,
        },
      },
      async (request, reply) => reply.code(201).send({ device: await useCases.registerDevice(customerActor(request), request.body) }),
    );

    app.get<{ Querystring: DeviceListQuerystring }>(
      '/devices',
      {
        schema: {
          tags: ['devices'],
          summary: 'List and search devices, each with its certificate status and soonest expiry',
          description: keysetListDescription,
          querystring: { type: 'object', additionalProperties: false, properties: deviceListQuery },
          response: deviceResponses.list,
        },
      },
      async (request) => {
        const actor = customerActor(request);
        return useCases.listDevices.forTenant(actor.tenantId, toListDevicesInput(request.query));
      },
    );

    app.get<{ Params: DeviceParams }>(
      '/devices/:device_id',
      { schema: { tags: ['devices'], summary: 'Get a device', params: deviceIdParam, response: deviceResponses.one } },
      async (request) => ({ device: await useCases.getDevice(customerActor(request), request.params.device_id) }),
    );

    app.post<{ Params: DeviceParams; Body: { validity_days?: number; key_type?: KeyType } | undefined }>(
      '/devices/:device_id/certificates/generate',
      {
        schema: {
          tags: ['certificates'],
          summary: 'Issue a certificate with a key generated here (returned once)',
          params: deviceIdParam,
          body: {
            type: ['object', 'null'],
            additionalProperties: false,
            properties: { validity_days: validityDays, key_type: keyType },
          },
          response: certificateResponses.issued,
        },
      },
      async (request, reply) => {
        const body = request.body ?? {};
        const result = await useCases.issueCertificate(customerActor(request), request.params.device_id, {
          validityDays: body.validity_days,
          key: { kind: 'generate', keyType: body.key_type ?? 'rsa-2048' },
        });
        return reply.code(201).send(result);
      },
    );

    app.post<{ Params: DeviceParams; Body: { csr_pem: string; validity_days?: number } }>(
      '/devices/:device_id/certificates/csr',
      {
        schema: {
          tags: ['certificates'],
          summary: "Issue a certificate for the device's own key (PKCS#10 CSR); the subject is forced to CN tenant/device",
          params: deviceIdParam,
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['csr_pem'],
            properties: { csr_pem: pemString, validity_days: validityDays },
          },
          response: certificateResponses.issued,
        },
      },
      async (request, reply) => {
        const result = await useCases.issueCertificate(customerActor(request), request.params.device_id, {
          validityDays: request.body.validity_days,
          key: { kind: 'csr', csrPem: request.body.csr_pem },
        });
        return reply.code(201).send(result);
      },
    );

    app.post<{ Params: DeviceParams; Body: { cert_pem: string } }>(
      '/devices/:device_id/certificates/import',
      {
        schema: {
          tags: ['certificates'],
          summary: 'Register an existing certificate issued by the Device CA',
          params: deviceIdParam,
          body: { type: 'object', additionalProperties: false, required: ['cert_pem'], properties: { cert_pem: pemString } },
          response: certificateResponses.imported,
        },
      },
      async (request, reply) =>
        reply.code(201).send(await useCases.importCertificate(customerActor(request), request.params.device_id, request.body.cert_pem)),
    );

    app.get<{ Querystring: CertificateListQuerystring }>(
      '/certificates',
      {
        schema: {
          tags: ['certificates'],
          summary: "List the tenant's certificates",
          description: keysetListDescription,
          querystring: certificateListQuery,
          response: certificateResponses.list,
        },
      },
      async (request) => {
        const actor = customerActor(request);
        const q = request.query;
        if (q.tenant_id !== undefined && q.tenant_id !== actor.tenantId) {
          throw new AppError('VALIDATION_FAILED', 'tenant_id filter is for operators; a tenant token lists its own tenant');
        }
        return useCases.listCertificates.forTenant(actor.tenantId, toListCertificatesInput(q));
      },
    );

    app.get<{ Params: IdParams }>(
      '/certificates/:id',
      { schema: { tags: ['certificates'], summary: 'Get a certificate with its PEM', params: certificateIdParam, response: certificateResponses.one } },
      async (request) => ({ certificate: await useCases.getCertificate(customerActor(request), request.params.id) }),
    );

    app.post<{ Params: IdParams; Body: { reason?: string } | undefined }>(
      '/certificates/:id/revoke',
      {
        schema: {
          tags: ['certificates'],
          summary: 'Revoke an ACTIVE certificate (reason: an RFC 5280 reason name, or free text)',
          description:
            'Already revoked: 409 CERTIFICATE_ALREADY_REVOKED; expired: 409 CERTIFICATE_EXPIRED (both with `certificate`). Revoking the new certificate of a pending rotation cancels that rotation: its old certificates stay ACTIVE.',
          params: certificateIdParam,
          body: { type: ['object', 'null'], additionalProperties: false, properties: { reason: revocationReasonInput('an RFC 5280 reason name (RevocationReason), or free text') } },
          response: certificateResponses.revoked,
        },
      },
      async (request) => useCases.revokeCertificate(customerActor(request), request.params.id, request.body?.reason),
    );

    app.get('/ca-bundle', { schema: { tags: ['pki'], summary: 'The Device CA certificate (PEM)' } }, async (request, reply) => {
      const actor = customerActor(request);
      return reply.type('application/x-pem-file').send(useCases.caCertPem(actor.tenantId));
    });
  };
}
