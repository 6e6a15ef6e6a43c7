import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import type { CertificateStatus, RotationFilter } from '../../domain/certificate.ts';
import { keysetListDescription, certificateCursor, certificateListQuery, deviceListQuery, toListDevicesInput, type DeviceListQuerystring } from '../schemas.ts';
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

    app.get<{ Querystring: { device_id?: string; status?: CertificateStatus; expiring_within_days?: number; rotation?: RotationFilter; ca_id?: string; limit: number; cursor?: string; tenant_id?: string } }>(
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
        return useCases.listCertificates.forOperator({
          tenantId: q.tenant_id,
          deviceId: q.device_id,
          status: q.status,
          expiringWithinDays: q.expiring_within_days,
          caId: q.ca_id,
          rotation: q.rotation,
          limit: q.limit,
          cursor: certificateCursor(q.cursor),
        });
      },
    );
  };
}
