import type { Queryable } from '../storage/driver.ts';
import { listAuditEvents, type AuditListQuery } from '../storage/repos/audit-repo.ts';
import type { AppDeps } from './deps.ts';

/** The repository's query, with the API's cursor (the last id of the previous page). */
export type ListAuditEventsInput = Omit<AuditListQuery, 'beforeId'> & { cursor?: number };

/** Newest first, keyset pages. Tenant scope (RLS) for customers; the operator role reads every tenant's log. */
export function createListAuditEvents({ db }: Pick<AppDeps, 'db'>) {
  const run = (q: ListAuditEventsInput) => async (tx: Queryable) => {
    const { cursor, ...query } = q;
    const page = await listAuditEvents(tx, { ...query, beforeId: cursor });
    return { audit_events: page.events, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListAuditEventsInput) => db.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListAuditEventsInput) => db.asOperator(run(q)),
  };
}
