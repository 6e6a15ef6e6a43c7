import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { AppError } from '../../domain/errors.ts';
import { customerActor } from '../auth-hooks.ts';
import { certificateCursor, noBody } from '../schemas.ts';
import { alertResponses } from '../response-schemas.ts';
import { alertListQuery, idParam, toListAlertsInput, type AlertListQuerystring } from './alert-schemas.ts';

type IdParams = { id: number };

/** The tenant's alerts (CERT_EXPIRING, CERT_EXPIRED, ...): list with filters, acknowledge, close. */
export function customerAlertRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: AlertListQuerystring }>(
      '/alerts',
      { schema: { tags: ['alerts'], summary: "List the tenant's alerts, newest first (filters: type, status, device_id, severity, min_severity)", querystring: alertListQuery, response: alertResponses.list } },
      async (request) => {
        const actor = customerActor(request);
        const q = request.query;
        if (q.tenant_id !== undefined && q.tenant_id !== actor.tenantId) {
          throw new AppError('VALIDATION_FAILED', 'tenant_id filter is for operators; a tenant token lists its own tenant');
        }
        return useCases.listAlerts.forTenant(actor.tenantId, toListAlertsInput(q, certificateCursor(q.cursor)));
      },
    );

    app.get<{ Params: IdParams }>(
      '/alerts/:id',
      { schema: { tags: ['alerts'], summary: 'Get an alert', params: idParam, response: alertResponses.one } },
      async (request) => ({ alert: await useCases.getAlert.forTenant(customerActor(request).tenantId, request.params.id) }),
    );

    app.post<{ Params: IdParams }>(
      '/alerts/:id/acknowledge',
      { schema: { tags: ['alerts'], summary: 'Acknowledge an open alert (an escalation opens it again); 409 when closed', params: idParam, body: noBody, response: alertResponses.one } },
      async (request) => ({ alert: await useCases.acknowledgeAlert.forTenant(customerActor(request), request.params.id) }),
    );

    app.post<{ Params: IdParams }>(
      '/alerts/:id/close',
      { schema: { tags: ['alerts'], summary: 'Close an alert (not raised again for the same certificate until it escalates)', params: idParam, body: noBody, response: alertResponses.one } },
      async (request) => ({ alert: await useCases.closeAlert.forTenant(customerActor(request), request.params.id) }),
    );
  };
}
