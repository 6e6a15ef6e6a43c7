import { DAY_MS } from '../domain/clock.ts';
import type { CertificateStatus, RotationFilter } from '../domain/certificate.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { TenantRepositories } from './storage-ports.ts';

export interface ListCertificatesInput {
  tenantId?: string;
  deviceId?: string;
  status?: CertificateStatus;
  expiringWithinDays?: number;
  /** Signed by this CA record. */
  caId?: string;
  rotation?: RotationFilter;
  limit: number;
  cursor?: number;
}

export function createListCertificates({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  const run = (q: ListCertificatesInput) => async ({ certificates }: TenantRepositories) => {
    if (q.deviceId) assertDeviceId(q.deviceId);
    const page = await certificates.listCertificates({
      tenantId: q.tenantId,
      deviceId: q.deviceId,
      status: q.status,
      expiringBefore: q.expiringWithinDays === undefined ? undefined : new Date(clock.now().getTime() + q.expiringWithinDays * DAY_MS),
      rotation: q.rotation,
      caId: q.caId,
      limit: q.limit,
      beforeId: q.cursor,
    });
    return { certificates: page.certificates, total: page.total, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListCertificatesInput) => storage.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListCertificatesInput) => storage.asOperator(run(q)),
  };
}
