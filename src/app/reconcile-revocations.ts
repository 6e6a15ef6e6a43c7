import { SYSTEM_TENANT } from '../domain/alert.ts';
import { SEVERITY } from '../domain/expiry-policy.ts';
import type { AppDeps } from './deps.ts';
import type { OperatorRepositories, RestoredRevocations } from './storage-ports.ts';

/**
 * Disaster recovery: a database restored from an older backup lacks the revocations made since.
 * Before the first publication, the CRL publisher (crl/reconcile-crl.ts) hands this use case the
 * entries of the newest CRL it found that verifies against the CA (the broker's file, the stored
 * CRL, an operator-given file): every certificate listed there that the database does not hold as
 * REVOKED is re-marked REVOKED with the CRL's date and reason; a serial the database does not know
 * at all is kept, so every later CRL still lists it. Each is audited
 * (`certificate.revocation_restored`), one CRL_RECONCILED system alert says how many, and the CRL
 * number floor is raised to the highest number seen (the next CRL is numbered above it).
 *
 * One operator transaction holding the CA's crl_state row lock (the publishers' lock): replicas
 * starting together reconcile one after the other, and the second finds nothing to do
 * (idempotent). Never un-revokes anything: it only adds revocations.
 */

export const REVOCATION_RESTORED_ACTION = 'certificate.revocation_restored';
export const CRL_RECONCILED_ALERT = 'CRL_RECONCILED';
export const CRL_RECONCILE_ACTOR = 'system:crl-reconcile';

/** Where a reconciled CRL came from. */
export type ReconcileSourceKind = 'broker_file' | 'stored' | 'operator_file';

export interface ReconcileSource {
  kind: ReconcileSourceKind;
  /** The file it was read from (null: the stored CRL). */
  path: string | null;
  crlNumber: bigint;
  thisUpdate: Date;
  /** Its entries (lowercase hex serials without leading zeros, RFC reason names). Read once. */
  entries: Iterable<{ serialHex: string; revokedAt: Date; reason: string }>;
}

export interface ReconcileResult {
  /** Certificates re-marked REVOKED. */
  remarked: number;
  /** Serials unknown to the database, kept for every later CRL. */
  kept: number;
  /** Entries read from the sources. */
  entries: number;
  /** The CRL number floor afterwards (the next CRL is numbered above it). */
  numberFloor: bigint;
  sources: Array<{ kind: ReconcileSourceKind; path: string | null; crl_number: string; entries: number; remarked: number; kept: number }>;
}

/** Entries per statement. */
const BATCH = 5000;

async function recordRestored(repos: OperatorRepositories, restored: RestoredRevocations, source: ReconcileSource, now: Date) {
  const from = { crl_number: source.crlNumber.toString(), crl_source: source.kind, ...(source.path ? { crl_path: source.path } : {}) };
  for (const c of restored.remarked) {
    if (c.reason === 'keyCompromise') await repos.keys.markKeyCompromised(c.id, c.revokedAt);
    await repos.rotations.completeRotationsOfOld(c.id, now);
    const cancelled = await repos.rotations.cancelRotationsOf(c.tenantId, c.deviceId, c.id, now);
    await repos.audit.recordAudit({
      tenantId: c.tenantId,
      actor: CRL_RECONCILE_ACTOR,
      action: REVOCATION_RESTORED_ACTION,
      targetType: 'certificate',
      targetId: c.id,
      details: {
        device_id: c.deviceId,
        serial_number: c.serialHex,
        reason: c.reason,
        revoked_at: c.revokedAt.toISOString(),
        status_before: c.previousStatus,
        ...from,
        ...(cancelled.length ? { cancelled_rotation_of: cancelled } : {}),
      },
      at: now,
    });
  }
  for (const k of restored.kept) {
    await repos.audit.recordAudit({
      tenantId: SYSTEM_TENANT,
      actor: CRL_RECONCILE_ACTOR,
      action: REVOCATION_RESTORED_ACTION,
      targetType: 'certificate_serial',
      targetId: k.serialHex,
      details: { serial_number: k.serialHex, reason: k.reason, revoked_at: k.revokedAt.toISOString(), unknown_certificate: true, ...from },
      at: now,
    });
  }
}

export function createReconcileRevocations({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return async (ca: { issuerKeyId: string; issuerLabel: string }, sources: ReconcileSource[]): Promise<ReconcileResult> =>
    storage.asOperator(async (repos) => {
      const state = await repos.crl.lockCrlState(ca.issuerKeyId);
      const now = clock.now();
      const result: ReconcileResult = { remarked: 0, kept: 0, entries: 0, numberFloor: state.numberFloor ?? 0n, sources: [] };
      for (const source of sources) {
        const counts = { kind: source.kind, path: source.path, crl_number: source.crlNumber.toString(), entries: 0, remarked: 0, kept: 0 };
        let batch: Array<{ serialHex: string; revokedAt: Date; reason: string }> = [];
        const flush = async () => {
          if (batch.length === 0) return;
          const restored = await repos.crl.restoreRevocations(ca.issuerLabel, batch, source.crlNumber);
          batch = [];
          counts.remarked += restored.remarked.length;
          counts.kept += restored.kept.length;
          await recordRestored(repos, restored, source, now);
        };
        for (const entry of source.entries) {
          counts.entries++;
          batch.push(entry);
          if (batch.length >= BATCH) await flush();
        }
        await flush();
        result.entries += counts.entries;
        result.remarked += counts.remarked;
        result.kept += counts.kept;
        result.sources.push(counts);
        if (source.crlNumber > result.numberFloor) result.numberFloor = source.crlNumber;
      }
      if (result.numberFloor > (state.numberFloor ?? 0n)) await repos.crl.raiseCrlNumberFloor(ca.issuerKeyId, result.numberFloor);
      // A CRL newer than the stored one is out there (the database was restored): what GET /pki/crl serves must catch up at once.
      if (result.numberFloor > state.crlNumber) await repos.crl.requestCrlRebuild(ca.issuerLabel);
      const restored = result.remarked + result.kept;
      if (restored > 0) {
        const numbers = result.sources.filter((s) => s.remarked + s.kept > 0).map((s) => `${s.kind} CRL ${s.crl_number}`);
        await repos.alerts.raiseSystemAlert({
          tenantId: SYSTEM_TENANT,
          type: CRL_RECONCILED_ALERT,
          fingerprint: `crl:${ca.issuerKeyId}:${now.getTime()}`,
          severity: SEVERITY.HIGH,
          summary:
            `${restored} revocation${restored === 1 ? '' : 's'} restored from ${numbers.join(', ')}: the database lacked them (restored from an older backup?). ` +
            `${result.remarked} certificate${result.remarked === 1 ? '' : 's'} re-marked revoked, ${result.kept} unknown serial${result.kept === 1 ? '' : 's'} kept on every CRL`,
          details: { issuer_key_id: ca.issuerKeyId, restored, remarked: result.remarked, kept: result.kept, sources: result.sources, number_floor: result.numberFloor.toString() },
          now,
        });
      }
      return result;
    });
}

export type ReconcileRevocations = ReturnType<typeof createReconcileRevocations>;
