import { SYSTEM_TENANT } from '../domain/alert.ts';
import { DAY_MS } from '../domain/clock.ts';
import { SEVERITY } from '../domain/expiry-policy.ts';
import type { CaRecord, CaStatus } from '../domain/ca.ts';
import type { AppDeps } from './deps.ts';
import type { OperatorRepositories } from './storage-ports.ts';

export const SYSTEM_HEALTH_ACTOR = 'system:health';

export interface SystemHealth {
  /** This replica's name: the broker it reloads is its own, so its alert is its own. */
  node: string;
  /** True while the broker has not taken the latest CRL file (its reload failed and is retried); null: this process reloads no broker. */
  brokerReloadPending(): boolean | null;
  /** The CAs watched for expiry (null: none loaded): every CA record not retired or revoked (watchedCas), else the CA this process signs with. */
  cas(): WatchedCa[] | null;
}

export interface WatchedCa {
  /** Subject key identifier (hex): the alert's fingerprint `ca:<id>`. */
  id: string;
  /** The CA record's id, when the CA is a record. */
  recordId?: string;
  subject: string;
  notAfter: Date;
  tenantId?: string | null;
  status?: CaStatus;
  /** A later CA of the same scope is staged or active: the fleet has somewhere to move (no CRITICAL). */
  successorStaged: boolean;
  /** Retired or revoked: not watched any more (its alert, if open, closes). */
  ended?: boolean;
}

/** The CA records watched for expiry: every one not retired or revoked (those come with `ended`, to close their alert), with whether a successor is staged (or active) in its scope. */
export function watchedCas(records: readonly CaRecord[]): WatchedCa[] {
  return records
    .map((r) => ({
      ended: r.status === 'retired' || r.status === 'revoked',
      id: r.issuerKeyId,
      recordId: r.id,
      subject: r.subject,
      notAfter: r.notAfter,
      tenantId: r.tenantId,
      status: r.status,
      successorStaged: records.some(
        (o) => o.id !== r.id && o.kind === r.kind && o.tenantId === r.tenantId && (o.status === 'staged' || (o.status === 'active' && r.status !== 'active')) && o.notAfter > r.notAfter,
      ),
    }));
}

/**
 * CA_EXPIRING severity: MEDIUM within 180 days, HIGH within 60, CRITICAL within 30 or past. A CA
 * still signing 30 days before its notAfter is critical: there is no next CA staged to move the
 * fleet to (the CA is configuration, not a record with a successor, yet).
 */
export const CA_EXPIRY_THRESHOLDS_DAYS = { medium: 180, high: 60, critical: 30 } as const;

export function caExpirySeverity(msLeft: number): number | null {
  if (msLeft <= CA_EXPIRY_THRESHOLDS_DAYS.critical * DAY_MS) return SEVERITY.CRITICAL;
  if (msLeft <= CA_EXPIRY_THRESHOLDS_DAYS.high * DAY_MS) return SEVERITY.HIGH;
  if (msLeft <= CA_EXPIRY_THRESHOLDS_DAYS.medium * DAY_MS) return SEVERITY.MEDIUM;
  return null;
}

type Condition = { severity: number; summary: string; details: Record<string, unknown> } | null;

/** Opens (or escalates) the system alert while `condition` holds, closes it when it no longer does. */
async function syncSystemAlert(repos: OperatorRepositories, type: string, fingerprint: string, condition: Condition, now: Date): Promise<string> {
  const key = { tenantId: SYSTEM_TENANT, type, fingerprint };
  if (condition === null) return (await repos.alerts.resolveSystemAlert({ ...key, actor: SYSTEM_HEALTH_ACTOR, now })) ? 'closed' : 'none';
  return repos.alerts.raiseSystemAlert({ ...key, ...condition, now });
}

/**
 * System alerts beyond the CRL's freshness (CRL_STALE): BROKER_RELOAD_FAILING (HIGH: revoked
 * devices can still connect) while this replica's broker has not taken the latest CRL, and
 * CA_EXPIRING for a signing CA within 180 days of its notAfter (every device certificate it
 * issued stops working then). Each closes itself when its cause is gone; idempotent.
 */
export function createCheckSystemAlerts({ storage, clock, health }: Pick<AppDeps, 'storage' | 'clock'> & { health: SystemHealth }) {
  return async () => {
    const now = clock.now();
    return storage.asOperator(async (repos) => {
      const out: Record<string, string> = {};
      const pending = health.brokerReloadPending();
      if (pending !== null) {
        out.broker_reload = await syncSystemAlert(
          repos,
          'BROKER_RELOAD_FAILING',
          `broker:${health.node}`,
          pending
            ? {
                severity: SEVERITY.HIGH,
                summary: `The broker next to ${health.node} has not reloaded the latest CRL: revoked devices can still connect (certfleet retries)`,
                details: { node: health.node },
              }
            : null,
          now,
        );
      }
      for (const ca of health.cas() ?? []) {
        const computed = caExpirySeverity(ca.notAfter.getTime() - now.getTime());
        const expired = ca.notAfter <= now;
        // CRITICAL within 30 days only while the scope has no next CA to move to; with one staged it stays HIGH (until it expires).
        const severity = ca.ended ? null : computed === SEVERITY.CRITICAL && ca.successorStaged && !expired ? SEVERITY.HIGH : computed;
        const scope = ca.tenantId ? `tenant ${ca.tenantId}` : 'the global scope';
        out[`ca:${ca.id}`] = await syncSystemAlert(
          repos,
          'CA_EXPIRING',
          `ca:${ca.id}`,
          severity === null
            ? null
            : {
                severity,
                summary: expired
                  ? `The CA ${ca.subject} has expired: no device certificate it issued is valid`
                  : ca.successorStaged
                    ? `The CA ${ca.subject} expires on ${ca.notAfter.toISOString()}: a next CA is staged or active in ${scope}; move its devices (rotate-expiring --issuer ${ca.recordId ?? ca.id})`
                    : `The CA ${ca.subject} expires on ${ca.notAfter.toISOString()} and no next CA is staged in ${scope}: stage one (certfleet ca create) before its device certificates stop working`,
                details: { ca_id: ca.id, ...(ca.recordId ? { ca_record_id: ca.recordId, status: ca.status, tenant_id: ca.tenantId ?? null } : {}), subject: ca.subject, not_after: ca.notAfter.toISOString(), successor_staged: ca.successorStaged },
              },
          now,
        );
      }
      return out;
    });
  };
}
