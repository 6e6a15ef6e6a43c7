/**
 * An in-memory `Storage` (src/app/storage-ports.ts) for fast use-case unit tests: devices,
 * certificates, rotations, the audit log, device keys, task locks, and the expiry alerts
 * (reconcile, expire, acknowledge; their webhook events kept in `alertEvents`), and the CRL state
 * of each CA with the revocations' pending marks and the RFC 5280 retention of the entries read
 * (the SQL of storage/repos/crl-repo.ts, row by row), with the ports' semantics
 * (ACTIVE → REVOKED only, a tenant sees only its rows, a unit of work commits all or nothing).
 * Repositories it does not implement yet throw, naming the method: a use case that needs one
 * keeps its real-database test. The real storage's tests cover the same behaviours on Postgres
 * and PGlite.
 */
import type {
  AuditEvent,
  CrlToStore,
  ExpiringAlertsInput,
  OperatorRepositories,
  PendingRotation,
  RevokedEntriesScope,
  RevokedEntryCallback,
  Storage,
  StoredCrlInfo,
} from '../../src/app/storage-ports.ts';
import type { AlertRecord } from '../../src/domain/alert.ts';
import { isIssuingActive, type CaRecord } from '../../src/domain/ca.ts';
import { X509Certificate } from 'node:crypto';
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
  alerts: AlertRecord[];
  /** The alert events the real storage queues for the tenant's webhooks (one per alert and event). */
  alertEvents: { alertId: number; event: string; at: string }[];
  sharedKeys: Record<string, boolean>;
  /** certificate_authorities (operator only: a tenant unit of work sees none). */
  cas: CaRecord[];
  /** crl_state by issuer key id: the latest CRL stored for each CA (operator only). */
  crls: Record<string, StoredCrlInfo & { der: Uint8Array | null }>;
  /** crl_pending_revocations: a revocation's mark (issuer, serial) until a CRL build takes it. */
  pendingRevocations: { issuer: string; serial: string | null }[];
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
  let state: State = { devices: [], certificates: [], rotations: [], audit: [], compromised: [], alerts: [], alertEvents: [], sharedKeys: {}, cas: [], crls: {}, pendingRevocations: [], nextId: 1 };

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
            ca_id: c.caId ?? null,
          };
          state.certificates.push(row);
          await implemented.audit.recordAudit({ ...audit, tenantId: c.tenantId, targetId: row.id, at: c.now });
          return record(row);
        },
        async insertIssuedCertificates(members: Parameters<OperatorRepositories['certificates']['insertIssuedCertificates']>[0]) {
          // The checks against the state before the group, as the one SQL statement sees it.
          const usable = members.map(({ certificate: c }) =>
            !state.compromised.includes(c.spkiSha256) &&
            !visible(state.certificates).some((x) => x.tenant_id === c.tenantId && x.spki_sha256 === c.spkiSha256 && x.device_id !== c.deviceId));
          const out = [];
          for (const [i, m] of members.entries()) out.push(usable[i] ? await implemented.certificates.insertCertificate(m.certificate, m.audit) : null);
          return out;
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
          state.pendingRevocations.push({ issuer: c.issuer, serial: c.serial_number }); // the mark the real statement inserts with it
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
        async keyStatus(tenantId: string, deviceId: string, spki: string) {
          return {
            compromised: await implemented.keys.isCompromised(spki),
            otherDevices: await implemented.keys.otherDevicesWithKey(tenantId, deviceId, spki),
            allowsShared: await implemented.keys.allowsSharedDeviceKeys(tenantId),
          };
        },
        async keyStatuses(tenantId: string, items: Array<{ deviceId: string; spkiSha256: string }>) {
          const out = [];
          for (const i of items) out.push(await implemented.keys.keyStatus(tenantId, i.deviceId, i.spkiSha256));
          return out;
        },
        async setAllowSharedDeviceKeys(tenantId: string, allow: boolean) {
          state.sharedKeys[tenantId] = allow;
        },
      },
      tasks: {
        async lockTask() {},
      },
      alerts: {
        async findAlert(id: number) {
          const a = visible(state.alerts).find((x) => x.id === id);
          return a ? structuredClone(a) : null;
        },
        async acknowledgeAlert(id: number, actor: string, at: Date) {
          const a = visible(state.alerts).find((x) => x.id === id && x.status === 'OPEN');
          if (!a) return null;
          Object.assign(a, { status: 'ACKNOWLEDGED', acknowledged_at: at.toISOString(), acknowledged_by: actor, updated_at: at.toISOString() });
          return structuredClone(a);
        },
        /** The SQL of storage/repos/alerts-repo.ts, row by row. */
        async reconcileExpiryAlerts(input: ExpiringAlertsInput) {
          const now = input.now.getTime();
          const warnUntil = input.warnUntil.getTime();
          const at = input.now.toISOString();
          const certs = visible(state.certificates);
          const candidates = certs
            .filter((c) => c.status === 'ACTIVE' && Date.parse(c.not_after) > now && Date.parse(c.not_after) <= warnUntil)
            .filter((c) => !certs.some((n) => n.tenant_id === c.tenant_id && n.device_id === c.device_id && n.status === 'ACTIVE' && Date.parse(n.not_after) > warnUntil))
            .map((c) => {
              const severity = Math.max(...input.cutoffs.map((cut, i) => (Date.parse(c.not_after) <= cut.getTime() ? (input.severities[i] ?? 0) : 0)));
              return { cert: c, severity, daysRemaining: Math.floor((Date.parse(c.not_after) - now) / 86_400_000) };
            });
          const isCandidate = (a: AlertRecord) => candidates.some((k) => k.cert.tenant_id === a.tenant_id && k.cert.fingerprint_sha256 === a.fingerprint);
          const closedByReason: Record<string, number> = {};
          const close = (a: AlertRecord, reason: string) => {
            Object.assign(a, { status: 'CLOSED', closed_at: at, closed_by: input.actor, close_reason: reason, updated_at: at });
            closedByReason[reason] = (closedByReason[reason] ?? 0) + 1;
            state.alertEvents.push({ alertId: a.id, event: 'alert.closed', at });
          };
          const openBefore = visible(state.alerts).filter((a) => a.alert_type === 'CERT_EXPIRING' && a.status !== 'CLOSED').map((a) => ({ ...a }));
          for (const a of visible(state.alerts).filter((x) => x.status !== 'CLOSED')) {
            if (a.alert_type === 'CERT_EXPIRING' && !isCandidate(a)) {
              const c = certs.find((x) => x.tenant_id === a.tenant_id && x.fingerprint_sha256 === a.fingerprint);
              const reason = !c ? 'resolved' : c.status === 'REVOKED' ? 'revoked' : c.status === 'EXPIRED' || Date.parse(c.not_after) <= now ? 'expired' : Date.parse(c.not_after) > warnUntil ? 'resolved' : 'rotated';
              close(a, reason);
            } else if (a.alert_type === 'CERT_EXPIRED' && certs.some((n) => n.tenant_id === a.tenant_id && n.device_id === a.device_id && n.status === 'ACTIVE' && Date.parse(n.not_after) > now)) {
              close(a, 'replaced');
            }
          }
          let opened = 0;
          let escalated = 0;
          for (const k of candidates) {
            const c = k.cert;
            if (openBefore.some((o) => o.tenant_id === c.tenant_id && o.fingerprint === c.fingerprint_sha256 && o.severity >= k.severity)) continue;
            const closedByHand = visible(state.alerts).some(
              (m) => m.tenant_id === c.tenant_id && m.alert_type === 'CERT_EXPIRING' && m.fingerprint === c.fingerprint_sha256 && m.status === 'CLOSED' && m.close_reason === 'manual' && m.severity >= k.severity,
            );
            if (closedByHand) continue;
            const hoursLeft = (Date.parse(c.not_after) - now) / 3_600_000;
            const when = hoursLeft < 48 ? `${Math.max(1, Math.round(hoursLeft))}${hoursLeft < 1.5 ? ' hour' : ' hours'}` : `${k.daysRemaining} days`;
            const fields = {
              severity: k.severity,
              summary: `Certificate of device ${c.device_id} expires in ${when}`,
              details: { fingerprint: c.fingerprint_sha256, certificate_id: c.id, common_name: c.common_name, expires_at: c.not_after, days_remaining: k.daysRemaining },
              updated_at: at,
            };
            const open = visible(state.alerts).find((a) => a.tenant_id === c.tenant_id && a.alert_type === 'CERT_EXPIRING' && a.fingerprint === c.fingerprint_sha256 && a.status !== 'CLOSED');
            if (open) {
              if (open.severity >= k.severity) continue;
              Object.assign(open, fields, { status: 'OPEN', acknowledged_at: null, acknowledged_by: null });
              escalated++;
              state.alertEvents.push({ alertId: open.id, event: 'alert.escalated', at });
            } else {
              const alert: AlertRecord = {
                id: state.nextId++,
                tenant_id: c.tenant_id,
                device_id: c.device_id,
                alert_type: 'CERT_EXPIRING',
                fingerprint: c.fingerprint_sha256,
                status: 'OPEN',
                created_at: at,
                acknowledged_at: null,
                acknowledged_by: null,
                closed_at: null,
                closed_by: null,
                close_reason: null,
                ...fields,
              };
              state.alerts.push(alert);
              opened++;
              state.alertEvents.push({ alertId: alert.id, event: 'alert.opened', at });
            }
          }
          const closed = Object.values(closedByReason).reduce((sum, n) => sum + n, 0);
          return { opened, escalated, closed, closed_by_reason: closedByReason };
        },
        async expireCertificates(input: { now: Date; actor: string; severity: number }) {
          const now = input.now.getTime();
          const at = input.now.toISOString();
          const expired = visible(state.certificates).filter((c) => c.status === 'ACTIVE' && Date.parse(c.not_after) <= now);
          for (const c of expired) {
            Object.assign(c, { status: 'EXPIRED', updated_at: at });
            state.audit.push({ id: state.nextId++, tenantId: c.tenant_id, actor: input.actor, action: 'certificate.expired', targetType: 'certificate', targetId: String(c.id), details: { device_id: c.device_id, serial_number: c.serial_number, not_after: c.not_after }, at: input.now });
          }
          let alerted = 0;
          const devices = new Set(expired.map((c) => `${c.tenant_id}/${c.device_id}`));
          for (const key of devices) {
            const mine = expired.filter((c) => `${c.tenant_id}/${c.device_id}` === key).sort((a, b) => b.not_after.localeCompare(a.not_after) || b.id - a.id);
            const last = mine[0];
            if (!last) continue;
            if (visible(state.certificates).some((n) => n.tenant_id === last.tenant_id && n.device_id === last.device_id && n.status === 'ACTIVE' && Date.parse(n.not_after) > now)) continue;
            const fingerprint = `device:${last.device_id}`;
            if (state.alerts.some((a) => a.tenant_id === last.tenant_id && a.alert_type === 'CERT_EXPIRED' && a.fingerprint === fingerprint && a.status !== 'CLOSED')) continue;
            const alert: AlertRecord = {
              id: state.nextId++,
              tenant_id: last.tenant_id,
              device_id: last.device_id,
              alert_type: 'CERT_EXPIRED',
              fingerprint,
              status: 'OPEN',
              severity: input.severity,
              summary: `Device ${last.device_id} has no valid certificate: its last one expired; it can no longer connect`,
              details: { fingerprint: last.fingerprint_sha256, certificate_id: last.id, common_name: last.common_name, expires_at: last.not_after, days_remaining: 0 },
              created_at: at,
              updated_at: at,
              acknowledged_at: null,
              acknowledged_by: null,
              closed_at: null,
              closed_by: null,
              close_reason: null,
            };
            state.alerts.push(alert);
            alerted++;
            state.alertEvents.push({ alertId: alert.id, event: 'alert.opened', at });
          }
          return { expired: expired.length, devicesWithoutCertificate: alerted };
        },
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
    const operatorOnly = () => {
      if (tenant !== null) throw new Error('memory storage: certificate_authorities is an operator table (permission denied for the tenant role)');
    };
    const scopeKey = (t: string | null) => t ?? '';
    const casRepo: OperatorRepositories['cas'] = {
      async listCas() {
        operatorOnly();
        return state.cas.map((c) => ({ ...c }));
      },
      async findCa(id) {
        operatorOnly();
        const c = state.cas.find((x) => x.id === id);
        return c ? { ...c } : null;
      },
      async findCaByKeyId(keyId) {
        operatorOnly();
        const c = state.cas.find((x) => x.issuerKeyId === keyId);
        return c ? { ...c } : null;
      },
      async insertCa(ca) {
        operatorOnly();
        const { createdBy: _by, kind = 'issuing', parentId = null, ...rest } = ca;
        if (state.cas.some((x) => x.id === ca.id || x.issuerKeyId === ca.issuerKeyId || x.issuerLabel === ca.issuerLabel)) throw new AlreadyExistsError(ca.id);
        if (ca.status === 'active' && kind === 'issuing' && state.cas.some((x) => isIssuingActive(x) && scopeKey(x.tenantId) === scopeKey(ca.tenantId))) throw new AlreadyExistsError('active');
        const serialNumber = new X509Certificate(ca.certPem).serialNumber.toLowerCase().replace(/^0+(?=.)/, '');
        const record: CaRecord = { ...rest, kind, parentId, serialNumber, activatedAt: ca.status === 'active' ? ca.createdAt : null, retiringAt: null, retiredAt: null, revokedAt: null, revocationReason: null };
        state.cas.push(record);
        return { ...record };
      },
      async lockActiveCa(tenantId) {
        operatorOnly();
        const c = state.cas.find((x) => isIssuingActive(x) && scopeKey(x.tenantId) === scopeKey(tenantId));
        return c ? { ...c } : null;
      },
      async childCas(parentId) {
        operatorOnly();
        return state.cas.filter((x) => x.parentId === parentId).map((x) => ({ ...x }));
      },
      async setCaCrlUrl(id, url) {
        operatorOnly();
        const c = state.cas.find((x) => x.id === id);
        if (c) c.crlDistributionPoint = url;
      },
      async setCaStatus(id, to, from, at, reason) {
        operatorOnly();
        const c = state.cas.find((x) => x.id === id);
        if (!c || !from.includes(c.status)) return null;
        if (to === 'active' && c.kind === 'issuing' && state.cas.some((x) => x !== c && isIssuingActive(x) && scopeKey(x.tenantId) === scopeKey(c.tenantId))) throw new AlreadyExistsError('active');
        c.status = to;
        if (to === 'active') c.activatedAt = at;
        if (to === 'retiring') c.retiringAt = at;
        if (to === 'retired') c.retiredAt = at;
        if (to === 'revoked') c.revokedAt = at;
        if (to === 'revoked' || to === 'retired') c.revocationReason = reason ?? null;
        return { ...c };
      },
      async caProgress(caId, now) {
        operatorOnly();
        const counts = new Map<string, number>();
        for (const c of state.certificates) {
          if (c.ca_id === caId && c.status === 'ACTIVE' && Date.parse(c.not_after) > now.getTime()) counts.set(c.tenant_id, (counts.get(c.tenant_id) ?? 0) + 1);
        }
        return [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([tenantId, activeCertificates]) => ({ tenantId, activeCertificates }));
      },
      async backfillCaId(caId, issuerLabel, limit) {
        operatorOnly();
        const rows = state.certificates.filter((c) => c.issuer === issuerLabel && !c.ca_id).slice(0, limit);
        for (const c of rows) c.ca_id = caId;
        return rows.length;
      },
    };
    (implemented as Record<string, object>).cas = casRepo;
    (implemented as Record<string, object>).crl = crlRepo(tenant);
    const ports = ['devices', 'certificates', 'rotations', 'audit', 'alerts', 'webhooks', 'outbox', 'brokerGrants', 'keys', 'crl', 'tasks', 'brokerNodes', 'cas'] as const;
    return Object.fromEntries(ports.map((p) => [p, partial(p, (implemented as Record<string, object>)[p] ?? {})])) as unknown as OperatorRepositories;
  }

  /**
   * The CRL port (operator only), the SQL of storage/repos/crl-repo.ts row by row: times in whole
   * seconds as the statement floors them; a revoked certificate is listed while the previous CRL
   * had not yet passed its notAfter, or when revoked at or after that CRL (RFC 5280 3.3).
   */
  function crlRepo(tenant: string | null): Partial<OperatorRepositories['crl']> {
    const operatorOnly = () => {
      if (tenant !== null) throw new Error('memory storage: crl_state is an operator table (permission denied for the tenant role)');
    };
    const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000) * 1000;
    const listed = (c: Row, scope: RevokedEntriesScope) => {
      if (c.status !== 'REVOKED' || c.issuer !== scope.issuer || !c.revoked_at) return false;
      const previous = scope.previousThisUpdate?.getTime() ?? null;
      return previous === null || Date.parse(c.not_after) >= previous || Date.parse(c.revoked_at) >= previous;
    };
    const feed = (rows: Row[], onEntry: RevokedEntryCallback) => {
      for (const c of rows) onEntry(c.serial_number, seconds(c.revoked_at!), c.revoked_reason ?? '', seconds(c.not_after));
      return rows.length;
    };
    const info = ({ der: _der, ...rest }: State['crls'][string]): StoredCrlInfo => ({ ...rest });
    return {
      async lockCrlState(issuerKeyId: string) {
        operatorOnly();
        state.crls[issuerKeyId] ??= {
          issuerKeyId,
          crlNumber: 0n,
          thisUpdate: null,
          nextUpdate: null,
          sha256: null,
          entries: null,
          bytes: null,
          builtAt: null,
          publishedAt: null,
          numberFloor: 0n,
          der: null,
        };
        return info(state.crls[issuerKeyId]);
      },
      async saveCrl(issuerKeyId: string, crl: CrlToStore) {
        operatorOnly();
        const row = state.crls[issuerKeyId];
        if (!row) throw new Error(`crl_state row ${issuerKeyId} vanished`);
        Object.assign(row, {
          crlNumber: crl.crlNumber,
          thisUpdate: crl.thisUpdate,
          nextUpdate: crl.nextUpdate,
          sha256: crl.sha256,
          entries: crl.entries,
          bytes: crl.der.length,
          builtAt: crl.publishedAt,
          publishedAt: crl.publishedAt,
          der: Uint8Array.from(crl.der),
        });
        return info(row);
      },
      async readCrlInfo(issuerKeyId: string) {
        operatorOnly();
        const row = state.crls[issuerKeyId];
        return row?.der ? info(row) : null;
      },
      async readCrl(issuerKeyId: string) {
        operatorOnly();
        const row = state.crls[issuerKeyId];
        return row?.der ? { info: info(row), der: Buffer.from(row.der) } : null;
      },
      async takePendingRevocations(issuer: string) {
        operatorOnly();
        const taken = state.pendingRevocations.filter((m) => m.issuer === issuer);
        state.pendingRevocations = state.pendingRevocations.filter((m) => m.issuer !== issuer);
        return { serials: taken.flatMap((m) => (m.serial === null ? [] : [m.serial])), unnamed: taken.some((m) => m.serial === null) };
      },
      async hasPendingRevocations(issuer: string) {
        operatorOnly();
        return state.pendingRevocations.some((m) => m.issuer === issuer);
      },
      async requestCrlRebuild(issuer: string) {
        state.pendingRevocations.push({ issuer, serial: null });
      },
      async forEachRevokedCertificate(scope: RevokedEntriesScope, onEntry: RevokedEntryCallback) {
        operatorOnly();
        return feed(state.certificates.filter((c) => listed(c, scope)), onEntry);
      },
      // Nothing stored encoded here: every entry goes to onEntry.
      async forEachRevokedEntry(scope: RevokedEntriesScope, _onEncoded: unknown, onEntry: RevokedEntryCallback) {
        operatorOnly();
        return feed(state.certificates.filter((c) => listed(c, scope)), onEntry);
      },
      // Nothing stored encoded here: nothing to backfill.
      async backfillCrlEntries() {
        operatorOnly();
        return { lastId: null, scanned: 0, filled: 0 };
      },
      async forEachRevokedCertificateOf(scope: RevokedEntriesScope, serials: string[], onEntry: RevokedEntryCallback) {
        operatorOnly();
        return feed(state.certificates.filter((c) => serials.includes(c.serial_number) && listed(c, scope)), onEntry);
      },
      // No restored database here: no revocation kept from a reconciled CRL.
      async forEachRestoredRevocation() {
        operatorOnly();
        return 0;
      },
      // No CA hierarchy here (no root CA record): no revoked or retired intermediate to list.
      async forEachEndedIntermediate() {
        operatorOnly();
        return 0;
      },
    };
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
