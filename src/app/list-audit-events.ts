import type { AppDeps } from './deps.ts';
import type { AuditListQuery, TenantRepositories } from './storage-ports.ts';

/** The repository's query, with the API's cursor (the last id of the previous page). */
export type ListAuditEventsInput = Omit<AuditListQuery, 'beforeId'> & { cursor?: number };

/** Newest first, keyset pages. Tenant scope (RLS) for customers; the operator role reads every tenant's log. */
export function createListAuditEvents({ storage }: Pick<AppDeps, 'storage'>) {
  const run = (q: ListAuditEventsInput) => async ({ audit }: TenantRepositories) => {
    const { cursor, ...query } = q;
    const page = await audit.listAuditEvents({ ...query, beforeId: cursor });
    return { audit_events: page.events, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListAuditEventsInput) => storage.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListAuditEventsInput) => storage.asOperator(run(q)),
  };
}
