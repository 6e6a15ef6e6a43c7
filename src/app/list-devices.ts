import { DAY_MS } from '../domain/clock.ts';
import type { DeviceCertificateStatus, DeviceSort } from '../domain/device.ts';
import type { AppDeps } from './deps.ts';
import type { TenantRepositories } from './storage-ports.ts';

export interface ListDevicesInput {
  limit: number;
  cursor?: string;
  tenantId?: string;
  idPrefix?: string;
  siteId?: string;
  certificateStatus?: DeviceCertificateStatus;
  expiringWithinDays?: number;
  rotation?: 'pending' | 'none';
  sort?: DeviceSort;
  /** devices with an ACTIVE certificate signed by this CA record */
  caId?: string;
}

/** Search and pages of devices with their certificates' state; tenant scope (RLS) for customers, every tenant for operators. */
export function createListDevices({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  const run = (q: ListDevicesInput) => async ({ devices }: TenantRepositories) => {
    const page = await devices.listDevices({
      tenantId: q.tenantId,
      limit: q.limit,
      after: q.cursor,
      idPrefix: q.idPrefix,
      siteId: q.siteId,
      certificateStatus: q.certificateStatus,
      expiringBefore: q.expiringWithinDays === undefined ? undefined : new Date(clock.now().getTime() + q.expiringWithinDays * DAY_MS),
      rotation: q.rotation,
      sort: q.sort,
      caId: q.caId,
    });
    return { devices: page.devices, total: page.total, total_capped: page.totalCapped, limit: q.limit, next_cursor: page.next };
  };
  return {
    forTenant: (tenantId: string, q: ListDevicesInput) => storage.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListDevicesInput) => storage.asOperator(run(q)),
  };
}
