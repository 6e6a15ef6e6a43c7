import type { Queryable } from '../storage/driver.ts';
import { listDevices } from '../storage/repos/devices-repo.ts';
import type { AppDeps } from './deps.ts';

export interface ListDevicesInput {
  limit: number;
  cursor?: string;
  tenantId?: string;
}

/** Tenant scope (RLS) for customers; the operator role sees every tenant. */
export function createListDevices({ db }: Pick<AppDeps, 'db'>) {
  const run = (q: ListDevicesInput) => async (tx: Queryable) => {
    const page = await listDevices(tx, { tenantId: q.tenantId, limit: q.limit, after: q.cursor });
    return { devices: page.devices, total: page.total, limit: q.limit, next_cursor: page.next };
  };
  return {
    forTenant: (tenantId: string, q: ListDevicesInput) => db.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListDevicesInput) => db.asOperator(run(q)),
  };
}
