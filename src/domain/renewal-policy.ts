import { createHash } from 'node:crypto';
import { DAY_MS } from './clock.ts';
import { DEFAULT_VALIDITY_DAYS, MAX_VALIDITY_DAYS } from './certificate.ts';
import { AppError } from './errors.ts';

/**
 * A tenant's renewal policy (GET/PUT /api/v1/customer/renewal-policy). Pure: no I/O, no clock.
 *
 * - `validity_days`: the lifetime of the device certificates certfleet issues for the tenant
 *   when the request names none (API issue/rotate without validity_days, EST/MQTT renewal,
 *   EST enrollment).
 * - `renewal_window`: the fraction of a certificate's lifetime, at its end, in which the device
 *   should renew (1/3: during the last third).
 * - `jitter`: the fraction of that window over which each certificate's start is spread,
 *   deterministically per certificate (a hash of its fingerprint), so a fleet issued on one day
 *   does not renew in one minute.
 * - `recovery_window_days`: how long after notAfter a device may still renew with its expired
 *   certificate (0: never; at most MAX_RECOVERY_WINDOW_DAYS).
 * - `revoke_superseded`: a device renewal (EST, MQTT) revokes the certificate it replaced
 *   (reason superseded) when the device uses the new one or the grace period ends (true, the
 *   default), or leaves it to expire (false): superseded is not compromised, and with short
 *   validity the CRL then holds only real revocations. The replaced certificate can renew
 *   nothing more either way (CERTIFICATE_SUPERSEDED); until its notAfter it still opens a TLS
 *   connection, so a stolen old key stays usable that long.
 */
export interface RenewalPolicy {
  validity_days: number;
  renewal_window: number;
  jitter: number;
  recovery_window_days: number;
  revoke_superseded: boolean;
}

export const MAX_RECOVERY_WINDOW_DAYS = 365;
export const MIN_RENEWAL_WINDOW = 0.05;
export const MAX_RENEWAL_WINDOW = 0.9;

export const DEFAULT_RENEWAL_POLICY: RenewalPolicy = Object.freeze({
  validity_days: DEFAULT_VALIDITY_DAYS,
  renewal_window: 1 / 3,
  jitter: 0.25,
  recovery_window_days: 0,
  revoke_superseded: true,
});

const invalid = (field: string, rule: string) => new AppError('VALIDATION_FAILED', `${field} must be ${rule}`, { field });

/** A complete, valid policy from a PUT body (missing fields keep `current`); 422 otherwise. */
export function assertRenewalPolicy(input: Partial<Record<keyof RenewalPolicy, unknown>>, current: RenewalPolicy = DEFAULT_RENEWAL_POLICY): RenewalPolicy {
  const merged = { ...current, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) } as Record<keyof RenewalPolicy, unknown>;
  const { validity_days, renewal_window, jitter, recovery_window_days, revoke_superseded } = merged;
  if (!Number.isInteger(validity_days) || (validity_days as number) < 1 || (validity_days as number) > MAX_VALIDITY_DAYS) {
    throw invalid('validity_days', `an integer from 1 to ${MAX_VALIDITY_DAYS}`);
  }
  if (typeof renewal_window !== 'number' || !Number.isFinite(renewal_window) || renewal_window < MIN_RENEWAL_WINDOW || renewal_window > MAX_RENEWAL_WINDOW) {
    throw invalid('renewal_window', `a fraction of the lifetime from ${MIN_RENEWAL_WINDOW} to ${MAX_RENEWAL_WINDOW} (0.33: the last third)`);
  }
  if (typeof jitter !== 'number' || !Number.isFinite(jitter) || jitter < 0 || jitter > 1) {
    throw invalid('jitter', 'a fraction of the renewal window from 0 to 1');
  }
  if (!Number.isInteger(recovery_window_days) || (recovery_window_days as number) < 0 || (recovery_window_days as number) > MAX_RECOVERY_WINDOW_DAYS) {
    throw invalid('recovery_window_days', `an integer from 0 (off) to ${MAX_RECOVERY_WINDOW_DAYS}`);
  }
  if (typeof revoke_superseded !== 'boolean') throw invalid('revoke_superseded', 'true or false');
  return { validity_days: validity_days as number, renewal_window, jitter, recovery_window_days: recovery_window_days as number, revoke_superseded };
}

/** A number in [0, 1) from a certificate's fingerprint: the same certificate always gets the same. */
function unitHash(fingerprint: string): number {
  const digest = createHash('sha256').update(`certfleet-renewal-jitter:${fingerprint}`).digest();
  return digest.readUInt32BE(0) / 0x1_0000_0000;
}

export interface RenewalSchedule {
  /** The certificate's window starts (the device should renew from now on). */
  dueAt: Date;
  /** Half of the window (from dueAt to notAfter) is gone: the expiry alert is raised from here. */
  overdueAt: Date;
}

/**
 * When a certificate's renewal is due: its window is the last `renewal_window` of its lifetime;
 * the start is moved later by up to `jitter` of the window, by a hash of the fingerprint.
 */
export function renewalSchedule(cert: { not_before: string | Date; not_after: string | Date; fingerprint_sha256: string }, policy: RenewalPolicy): RenewalSchedule {
  const notBefore = new Date(cert.not_before).getTime();
  const notAfter = new Date(cert.not_after).getTime();
  const lifetime = Math.max(0, notAfter - notBefore);
  const window = lifetime * policy.renewal_window;
  const start = notAfter - window;
  const dueAt = Math.floor(start + window * policy.jitter * unitHash(cert.fingerprint_sha256));
  const overdueAt = Math.floor(dueAt + (notAfter - dueAt) / 2);
  return { dueAt: new Date(Math.floor(dueAt / 1000) * 1000), overdueAt: new Date(Math.floor(overdueAt / 1000) * 1000) };
}

/** An expired certificate may still renew at `now` when the tenant's recovery window allows it. */
export function withinRecoveryWindow(notAfter: string | Date, policy: RenewalPolicy, now: Date): boolean {
  if (policy.recovery_window_days <= 0) return false;
  return now.getTime() <= new Date(notAfter).getTime() + policy.recovery_window_days * DAY_MS;
}
