import { AppError } from '../domain/errors.ts';
import type { AppDeps } from './deps.ts';
import type { AlertListQuery, TenantRepositories } from './storage-ports.ts';

export const alertNotFound = (id: number) => new AppError('ALERT_NOT_FOUND', `alert ${id} not found`);

/** The repository's query, with the API's cursor (the last id of the previous page). */
export type ListAlertsInput = Omit<AlertListQuery, 'beforeId'> & { cursor?: number };

/** Newest first, keyset pages. Tenant scope (RLS) for customers; the operator role sees every tenant and the system alerts. */
export function createListAlerts({ storage }: Pick<AppDeps, 'storage'>) {
  const run = (q: ListAlertsInput) => async ({ alerts }: TenantRepositories) => {
    const { cursor, ...query } = q;
    const page = await alerts.listAlerts({ ...query, beforeId: cursor });
    return { alerts: page.alerts, total: page.total, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListAlertsInput) => storage.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListAlertsInput) => storage.asOperator(run(q)),
  };
}

export function createGetAlert({ storage }: Pick<AppDeps, 'storage'>) {
  const get = async ({ alerts }: TenantRepositories, id: number) => {
    const alert = await alerts.findAlert(id);
    if (!alert) throw alertNotFound(id);
    return alert;
  };
  return {
    forTenant: (tenantId: string, id: number) => storage.asTenant(tenantId, (repos) => get(repos, id)),
    forOperator: (id: number) => storage.asOperator((repos) => get(repos, id)),
  };
}
