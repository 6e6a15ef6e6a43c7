import type { AppDeps } from './deps.ts';
import type { TenantRepositories } from './storage-ports.ts';

export interface ListDevicesInput {
  limit: number;
  cursor?: string;
  tenantId?: string;
}

/** Tenant scope (RLS) for customers; the operator role sees every tenant. */
export function createListDevices({ storage }: Pick<AppDeps, 'storage'>) {
  const run = (q: ListDevicesInput) => async ({ devices }: TenantRepositories) => {
    const page = await devices.listDevices({ tenantId: q.tenantId, limit: q.limit, after: q.cursor });
    return { devices: page.devices, total: page.total, limit: q.limit, next_cursor: page.next };
  };
  return {
    forTenant: (tenantId: string, q: ListDevicesInput) => storage.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListDevicesInput) => storage.asOperator(run(q)),
  };
}
