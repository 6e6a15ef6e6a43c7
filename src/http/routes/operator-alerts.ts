import type { FastifyInstance } from 'fastify';
import type { UseCases } from '../../app/use-cases.ts';
import { operatorPrincipal } from '../auth-hooks.ts';
import { certificateCursor, noBody } from '../schemas.ts';
import { alertResponses } from '../response-schemas.ts';
import { alertListQuery, idParam, toListAlertsInput, type AlertListQuerystring } from './alert-schemas.ts';

type IdParams = { id: number };

/** Alerts of every tenant and the system alerts (CRL_STALE, BROKER_RELOAD_FAILING, CA_EXPIRING; tenant `__system__`). */
export function operatorAlertRoutes(useCases: UseCases) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: AlertListQuerystring }>(
      '/alerts',
      { schema: { tags: ['operator'], summary: 'List alerts of every tenant (tenant_id=__system__ for system alerts)', querystring: alertListQuery, response: alertResponses.list } },
      async (request) => {
        const q = request.query;
        return useCases.listAlerts.forOperator({ ...toListAlertsInput(q, certificateCursor(q.cursor)), tenantId: q.tenant_id });
      },
    );

    app.get<{ Params: IdParams }>(
      '/alerts/:id',
      { schema: { tags: ['operator'], summary: 'Get an alert of any tenant', params: idParam, response: alertResponses.one } },
      async (request) => {
        return { alert: await useCases.getAlert.forOperator(request.params.id) };
      },
    );

    app.post<{ Params: IdParams }>(
      '/alerts/:id/acknowledge',
      { schema: { tags: ['operator'], summary: 'Acknowledge an alert of any tenant', params: idParam, body: noBody, response: alertResponses.one } },
      async (request) => ({ alert: await useCases.acknowledgeAlert.forOperator(operatorPrincipal(request).subject, request.params.id) }),
    );

    app.post<{ Params: IdParams }>(
      '/alerts/:id/close',
      { schema: { tags: ['operator'], summary: 'Close an alert of any tenant', params: idParam, body: noBody, response: alertResponses.one } },
      async (request) => ({ alert: await useCases.closeAlert.forOperator(operatorPrincipal(request).subject, request.params.id) }),
    );
  };
}
