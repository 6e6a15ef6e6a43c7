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
  asTenant<T>(tenantId: string, fn: (tx: Queryable) => Promise<T>): Promise<T>;
  asOperator<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function createDatabase(driver: Driver): Database {
  return {
    kind: driver.kind,
    asTenant: (tenantId, fn) =>
      driver.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE certfleet_app');
        await tx.query("SELECT set_config('app.tenant_id', $1, true)", [tenantId]);
        return fn(tx);
      }),
    asOperator: (fn) =>
      driver.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE certfleet_operator');
        return fn(tx);
      }),
    close: () => driver.close(),
  };
}
