import { AppError } from '../domain/errors.ts';
import type { Queryable } from '../storage/driver.ts';
import { findAlert, listAlerts, type AlertListQuery } from '../storage/repos/alerts-repo.ts';
import type { AppDeps } from './deps.ts';

export const alertNotFound = (id: number) => new AppError('ALERT_NOT_FOUND', `alert ${id} not found`);

/** The repository's query, with the API's cursor (the last id of the previous page). */
export type ListAlertsInput = Omit<AlertListQuery, 'beforeId'> & { cursor?: number };

/** Newest first, keyset pages. Tenant scope (RLS) for customers; the operator role sees every tenant and the system alerts. */
export function createListAlerts({ db }: Pick<AppDeps, 'db'>) {
  const run = (q: ListAlertsInput) => async (tx: Queryable) => {
    const { cursor, ...query } = q;
    const page = await listAlerts(tx, { ...query, beforeId: cursor });
    return { alerts: page.alerts, total: page.total, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListAlertsInput) => db.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListAlertsInput) => db.asOperator(run(q)),
  };
}

export function createGetAlert({ db }: Pick<AppDeps, 'db'>) {
  const get = async (tx: Queryable, id: number) => {
    const alert = await findAlert(tx, id);
    if (!alert) throw alertNotFound(id);
    return alert;
  };
  return {
    forTenant: (tenantId: string, id: number) => db.asTenant(tenantId, (tx) => get(tx, id)),
    forOperator: (id: number) => db.asOperator((tx) => get(tx, id)),
  };
}
