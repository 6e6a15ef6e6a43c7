import { DAY_MS } from '../domain/clock.ts';
import type { CertificateStatus, RotationFilter } from '../domain/certificate.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { Queryable } from '../storage/driver.ts';
import { listCertificates } from '../storage/repos/certificates-repo.ts';
import type { AppDeps } from './deps.ts';

export interface ListCertificatesInput {
  tenantId?: string;
  deviceId?: string;
  status?: CertificateStatus;
  expiringWithinDays?: number;
  rotation?: RotationFilter;
  limit: number;
  cursor?: number;
}

export function createListCertificates({ db, clock }: Pick<AppDeps, 'db' | 'clock'>) {
  const run = (q: ListCertificatesInput) => async (tx: Queryable) => {
    if (q.deviceId) assertDeviceId(q.deviceId);
    const page = await listCertificates(tx, {
      tenantId: q.tenantId,
      deviceId: q.deviceId,
      status: q.status,
      expiringBefore: q.expiringWithinDays === undefined ? undefined : new Date(clock.now().getTime() + q.expiringWithinDays * DAY_MS),
      rotation: q.rotation,
      limit: q.limit,
      beforeId: q.cursor,
    });
    return { certificates: page.certificates, total: page.total, limit: q.limit, next_cursor: page.next === null ? null : String(page.next) };
  };
  return {
    forTenant: (tenantId: string, q: ListCertificatesInput) => db.asTenant(tenantId, run({ ...q, tenantId })),
    forOperator: (q: ListCertificatesInput) => db.asOperator(run(q)),
  };
}
