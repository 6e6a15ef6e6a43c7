import type { Driver, Queryable } from './driver.ts';

/**
 * The only way the application reaches the database. Every unit of work is a
 * transaction that first drops to a role: `certfleet_app` (row-level security,
 * tenant from `app.tenant_id`) or `certfleet_operator` (BYPASSRLS, for system-wide
 * work such as the CRL and the worker). SET LOCAL outside a transaction would do
 * nothing; here it cannot happen.
 */
export interface Database {
  readonly kind: Driver['kind'];
  /** `options.genericPlans`: see TenantWorkOptions (app/storage-ports.ts). */
  asTenant<T>(tenantId: string, fn: (tx: Queryable) => Promise<T>, options?: { genericPlans?: boolean }): Promise<T>;
  asOperator<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A SQL string literal (standard_conforming_strings is on in every supported Postgres). */
const literal = (value: string) => `'${value.replace(/'/g, "''")}'`;

export function createDatabase(driver: Driver): Database {
  return {
    kind: driver.kind,
    // Role and tenant are set in the same round trip as BEGIN.
    asTenant: (tenantId, fn, options) => {
      if (tenantId.includes('\0')) throw new Error('invalid tenant id');
      const plans = options?.genericPlans ? '; SET LOCAL plan_cache_mode = force_generic_plan' : '';
      return driver.transaction(fn, `SET LOCAL ROLE certfleet_app; SELECT set_config('app.tenant_id', ${literal(tenantId)}, true)${plans}`);
    },
    asOperator: (fn) => driver.transaction(fn, 'SET LOCAL ROLE certfleet_operator'),
    close: () => driver.close(),
  };
}

/** One round trip as the operator role: throws when the database is unreachable (readiness). */
export async function pingDatabase(db: Database): Promise<void> {
  await db.asOperator((tx) => tx.query('SELECT 1'));
}
