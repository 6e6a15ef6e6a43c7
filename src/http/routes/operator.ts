import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { keysetListDescription, certificateListQuery, toListCertificatesInput, type CertificateListQuerystring, deviceListQuery, toListDevicesInput, type DeviceListQuerystring } from '../schemas.ts';
import { certificateResponses, deviceResponses } from '../response-schemas.ts';

/** Cross-tenant views for the platform team (operator role; runs as certfleet_operator). */
export function operatorRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: DeviceListQuerystring & { tenant_id?: string } }>(
      '/devices',
      {
        schema: {
          tags: ['operator'],
          summary: 'List devices of every tenant',
          description: keysetListDescription,
          querystring: { type: 'object', additionalProperties: false, properties: { ...deviceListQuery, tenant_id: { type: 'string', maxLength: 128 } } },
          response: deviceResponses.list,
        },
      },
      async (request) => {
        const q = request.query;
        return useCases.listDevices.forOperator({ ...toListDevicesInput(q), tenantId: q.tenant_id });
      },
    );

    app.get<{ Querystring: CertificateListQuerystring }>(
      '/certificates',
      {
        schema: {
          tags: ['operator'],
          summary: 'List certificates of every tenant',
          description: keysetListDescription,
          querystring: certificateListQuery,
          response: certificateResponses.list,
        },
      },
      async (request) => {
        const q = request.query;
        return useCases.listCertificates.forOperator({ ...toListCertificatesInput(q), tenantId: q.tenant_id });
      },
    );
  };
}
