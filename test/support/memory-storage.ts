/**
 * An in-memory `Storage` (src/app/storage-ports.ts) for fast use-case unit tests: devices,
 * certificates, rotations, the audit log, device keys and task locks, with the ports' semantics
 * (ACTIVE → REVOKED only, a tenant sees only its rows, a unit of work commits all or nothing).
 * Repositories it does not implement yet throw, naming the method: a use case that needs one
 * keeps its real-database test. The real storage's tests cover the same behaviours on Postgres
 * and PGlite.
 */
import type { AuditEvent, OperatorRepositories, PendingRotation, Storage } from '../../src/app/storage-ports.ts';
import { AlreadyExistsError, ReferenceNotFoundError } from '../../src/app/storage-ports.ts';
import type { CertificateRecord, CertificateWithPem } from '../../src/domain/certificate.ts';
import type { DeviceRecord } from '../../src/domain/device.ts';

interface Row extends CertificateWithPem {
  spki_sha256: string;
}

interface RotationRow {
  id: number;
  tenant_id: string;
  device_id: string;
  new_certificate_id: number;
  old_certificate_id: number;
  status: 'PENDING' | 'COMPLETED' | 'CANCELLED';
  scheduled_revoke_at: string;
  created_at: string;
  started_by: string;
}

interface State {
  devices: DeviceRecord[];
  certificates: Row[];
  rotations: RotationRow[];
  audit: (AuditEvent & { id: number })[];
  compromised: string[];
  sharedKeys: Record<string, boolean>;
  nextId: number;
}

const record = (row: Row): CertificateRecord => {
  const { cert_pem: _pem, spki_sha256: _spki, ...rest } = row;
  return { ...rest };
};

export interface MemoryStorage extends Storage {
  /** A copy of everything stored (for assertions). */
  snapshot(): State;
}

export function createMemoryStorage(): MemoryStorage {
  let state: State = { devices: [], certificates: [], rotations: [], audit: [], compromised: [], sharedKeys: {}, nextId: 1 };

  function repositories(tenant: string | null): OperatorRepositories {
    const visible = <T extends { tenant_id: string }>(rows: T[]) => rows.filter((r) => tenant === null || r.tenant_id === tenant);
    const certificate = (id: number) => visible(state.certificates).find((c) => c.id === id);
    const pending = (r: RotationRow): PendingRotation => {
      const oldCert = state.certificates.find((c) => c.id === r.old_certificate_id);
      const newCert = state.certificates.find((c) => c.id === r.new_certificate_id);
      return {
        id: r.id,
        tenant_id: r.tenant_id,
        device_id: r.device_id,
        new_certificate_id: r.new_certificate_id,
        old_certificate_id: r.old_certificate_id,
        old_fingerprint: oldCert?.fingerprint_sha256 ?? '',
        old_status: oldCert?.status ?? 'UNKNOWN',
        new_status: newCert?.status ?? 'UNKNOWN',
        scheduled_revoke_at: r.scheduled_revoke_at,
        created_at: r.created_at,
        started_by: r.started_by,
      };
    };
    const implemented = {
      devices: {
        async insertDevice(d: { tenantId: string; deviceId: string; siteId: string | null; now: Date }) {
          if (state.devices.some((x) => x.tenant_id === d.tenantId && x.device_id === d.deviceId)) throw new AlreadyExistsError(d.deviceId);
          const at = d.now.toISOString();
          const device: DeviceRecord = { tenant_id: d.tenantId, device_id: d.deviceId, site_id: d.siteId, status: 'ACTIVE', created_at: at, updated_at: at };
          state.devices.push(device);
          return { ...device };
        },
        async findDevice(tenantId: string, deviceId: string) {
          const d = visible(state.devices).find((x) => x.tenant_id === tenantId && x.device_id === deviceId);
          return d ? { ...d } : null;
        },
        async lockDevice(tenantId: string, deviceId: string) {
          return implemented.devices.findDevice(tenantId, deviceId);
        },
      },
      certificates: {
        async insertCertificate(
          c: Parameters<OperatorRepositories['certificates']['insertCertificate']>[0],
          audit: Parameters<OperatorRepositories['certificates']['insertCertificate']>[1],
        ) {
          if (!visible(state.devices).some((d) => d.tenant_id === c.tenantId && d.device_id === c.deviceId)) throw new ReferenceNotFoundError(c.deviceId);
          if (state.certificates.some((x) => x.fingerprint_sha256 === c.fingerprint)) throw new AlreadyExistsError(c.fingerprint);
          const at = c.now.toISOString();
          const row: Row = {
            id: state.nextId++,
            tenant_id: c.tenantId,
            device_id: c.deviceId,
            fingerprint_sha256: c.fingerprint,
            common_name: c.commonName,
            issuer: c.issuer,
            serial_number: c.serialNumber,
            key_type: c.keyType,
            status: 'ACTIVE',
            not_before: c.notBefore.toISOString(),
            not_after: c.notAfter.toISOString(),
            revoked_at: null,
            revoked_reason: null,
            scheduled_revoke_at: null,
            created_at: at,
            updated_at: at,
            cert_pem: c.certPem,
            spki_sha256: c.spkiSha256,
          };
          state.certificates.push(row);
          await implemented.audit.recordAudit({ ...audit, tenantId: c.tenantId, targetId: row.id, at: c.now });
          return record(row);
        },
        async findCertificate(id: number) {
          const c = certificate(id);
          if (!c) return null;
          const { spki_sha256: _spki, ...withPem } = c;
          return { ...withPem };
        },
        async activeCertificatesOfDevice(tenantId: string, deviceId: string) {
          return visible(state.certificates)
            .filter((c) => c.tenant_id === tenantId && c.device_id === deviceId && c.status === 'ACTIVE')
            .map(record);
        },
        async lockCertificate(id: number) {
          return certificate(id)?.status ?? null;
        },
        async markRevoked(id: number, reason: string, at: Date) {
          const c = certificate(id);
          if (!c || c.status !== 'ACTIVE') return null;
          Object.assign(c, { status: 'REVOKED', revoked_at: at.toISOString(), revoked_reason: reason, updated_at: at.toISOString() });
          return record(c);
        },
      },
      rotations: {
        async scheduleRevocation(s: { tenantId: string; deviceId: string; newCertificateId: number; oldCertificateId: number; revokeAt: Date; now: Date; startedBy: string }) {
          const row: RotationRow = {
            id: state.nextId++,
            tenant_id: s.tenantId,
            device_id: s.deviceId,
            new_certificate_id: s.newCertificateId,
            old_certificate_id: s.oldCertificateId,
            status: 'PENDING',
            scheduled_revoke_at: s.revokeAt.toISOString(),
            created_at: s.now.toISOString(),
            started_by: s.startedBy,
          };
          state.rotations.push(row);
          const old = certificate(s.oldCertificateId);
          if (old) old.scheduled_revoke_at = row.scheduled_revoke_at;
          return { scheduled_revoke_at: row.scheduled_revoke_at };
        },
        async pendingRotationsOfDevice(tenantId: string, deviceId: string) {
          return visible(state.rotations)
            .filter((r) => r.tenant_id === tenantId && r.device_id === deviceId && r.status === 'PENDING')
            .sort((a, b) => a.scheduled_revoke_at.localeCompare(b.scheduled_revoke_at))
            .map(pending);
        },
        async completeRotation(id: number) {
          const r = visible(state.rotations).find((x) => x.id === id && x.status === 'PENDING');
          if (r) r.status = 'COMPLETED';
        },
        async completeRotationsOfOld(oldCertificateId: number) {
          for (const r of visible(state.rotations)) if (r.old_certificate_id === oldCertificateId && r.status === 'PENDING') r.status = 'COMPLETED';
        },
        async latestRotationStatus(tenantId: string, deviceId: string) {
          return visible(state.rotations).filter((r) => r.tenant_id === tenantId && r.device_id === deviceId).at(-1)?.status ?? null;
        },
        async cancelRotationsOf(tenantId: string, deviceId: string, newCertificateId: number) {
          const kept: number[] = [];
          for (const r of visible(state.rotations)) {
            if (r.tenant_id === tenantId && r.device_id === deviceId && r.new_certificate_id === newCertificateId && r.status === 'PENDING') {
              r.status = 'CANCELLED';
              kept.push(r.old_certificate_id);
              const old = certificate(r.old_certificate_id);
              if (old) old.scheduled_revoke_at = null;
            }
          }
          return kept.sort((a, b) => a - b);
        },
        async claimDueRotations(now: Date, limit: number) {
          return visible(state.rotations)
            .filter((r) => r.status === 'PENDING' && Date.parse(r.scheduled_revoke_at) <= now.getTime())
            .slice(0, limit)
            .map(pending);
        },
      },
      audit: {
        async recordAudit(e: AuditEvent) {
          state.audit.push({ ...e, id: state.nextId++ });
        },
      },
      keys: {
        async isCompromised(spki: string) {
          return state.compromised.includes(spki);
        },
        async markKeyCompromised(certificateId: number) {
          const c = state.certificates.find((x) => x.id === certificateId);
          if (c && !state.compromised.includes(c.spki_sha256)) state.compromised.push(c.spki_sha256);
        },
        async otherDevicesWithKey(tenantId: string, deviceId: string, spki: string) {
          const ids = visible(state.certificates).filter((c) => c.tenant_id === tenantId && c.spki_sha256 === spki && c.device_id !== deviceId).map((c) => c.device_id);
          return [...new Set(ids)].sort().slice(0, 5);
        },
        async allowsSharedDeviceKeys(tenantId: string) {
          return state.sharedKeys[tenantId] ?? false;
        },
        async setAllowSharedDeviceKeys(tenantId: string, allow: boolean) {
          state.sharedKeys[tenantId] = allow;
        },
      },
      tasks: {
        async lockTask() {},
      },
    };
    // The rest of each port throws, naming what a test reached for.
    const partial = (name: string, impl: object) =>
      new Proxy(impl, {
        get(target, prop) {
          if (typeof prop === 'string' && !(prop in target) && prop !== 'then') {
            return () => Promise.reject(new Error(`memory storage: ${name}.${prop} is not implemented (use the real storage for this test)`));
          }
          return (target as Record<string | symbol, unknown>)[prop];
        },
      });
    const ports = ['devices', 'certificates', 'rotations', 'audit', 'alerts', 'webhooks', 'outbox', 'brokerGrants', 'keys', 'crl', 'tasks', 'brokerNodes'] as const;
    return Object.fromEntries(ports.map((p) => [p, partial(p, (implemented as Record<string, object>)[p] ?? {})])) as unknown as OperatorRepositories;
  }

  /** One unit of work: a copy of the state is worked on and kept only when `fn` succeeds. */
  async function unitOfWork<T>(tenant: string | null, fn: (repos: OperatorRepositories) => Promise<T>): Promise<T> {
    const before = state;
    state = structuredClone(state);
    try {
      return await fn(repositories(tenant));
    } catch (error) {
      state = before;
      throw error;
    }
  }

  return {
    asTenant: (tenantId, fn) => unitOfWork(tenantId, fn),
    asOperator: (fn) => unitOfWork(null, fn),
    snapshot: () => structuredClone(state),
  };
}
