import { DAY_MS } from './clock.ts';

/**
 * When a certificate's expiry raises an alert and how severe it is. Pure: no I/O, no
 * clock; the caller passes `now`. Severities are the platform's integer scale.
 */
export const SEVERITY = { LOW: 2, MEDIUM: 3, HIGH: 4, CRITICAL: 5 } as const;

export interface ExpiryPolicy {
  /** An ACTIVE certificate expiring within this many days has one open CERT_EXPIRING alert. */
  warningDays: number;
  /** Raised severities, tightest last: `severity` applies at `withinDays` or fewer days left. */
  escalations: ReadonlyArray<{ withinDays: number; severity: number }>;
  /** Severity of the first warning. */
  warningSeverity: number;
}

/** The default: MEDIUM within 30 days, HIGH within 7, CRITICAL within 1 (the thresholds are configurable). */
export function createExpiryPolicy(options: { warningDays?: number; highDays?: number; criticalDays?: number } = {}): ExpiryPolicy {
  const warningDays = options.warningDays ?? 30;
  const highDays = options.highDays ?? 7;
  const criticalDays = options.criticalDays ?? 1;
  for (const [name, v] of Object.entries({ warningDays, highDays, criticalDays })) {
    if (!(Number.isFinite(v) && v > 0)) throw new Error(`expiry policy: ${name} must be a positive number (got ${v})`);
  }
  if (!(criticalDays <= highDays && highDays <= warningDays)) {
    throw new Error(`expiry policy: thresholds must satisfy critical (${criticalDays}) <= high (${highDays}) <= warning (${warningDays}) days`);
  }
  return {
    warningDays,
    warningSeverity: SEVERITY.MEDIUM,
    escalations: [
      { withinDays: highDays, severity: SEVERITY.HIGH },
      { withinDays: criticalDays, severity: SEVERITY.CRITICAL },
    ],
  };
}

/** Severity for a certificate with `msLeft` until not_after, or null when no alert is due (or it has expired). */
export function expirySeverity(policy: ExpiryPolicy, msLeft: number): number | null {
  if (msLeft <= 0 || msLeft > policy.warningDays * DAY_MS) return null;
  let severity = policy.warningSeverity;
  for (const e of policy.escalations) if (msLeft <= e.withinDays * DAY_MS && e.severity > severity) severity = e.severity;
  return severity;
}

/** Whole days left, rounded down (the seed's `timedelta.days`). */
export const daysRemaining = (notAfter: Date, now: Date): number => Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);

/**
 * The policy as instants for one run at `now`, for set-based SQL: a certificate with
 * not_after in (now, warnUntil] is alerted; its severity is the highest `severities[i]`
 * whose `cutoffs[i]` is at or after its not_after. Equivalent to expirySeverity.
 */
export function expiryBands(policy: ExpiryPolicy, now: Date): { warnUntil: Date; cutoffs: Date[]; severities: number[] } {
  const at = (days: number) => new Date(now.getTime() + days * DAY_MS);
  const bands = [{ withinDays: policy.warningDays, severity: policy.warningSeverity }, ...policy.escalations];
  return { warnUntil: at(policy.warningDays), cutoffs: bands.map((b) => at(b.withinDays)), severities: bands.map((b) => b.severity) };
}

/**
 * CRL_STALE: the published CRL is within `marginMs` of its nextUpdate (Mosquitto rejects
 * every client once it passes), or publication failed `failures` times in a row.
 * CRITICAL when nextUpdate has passed, HIGH otherwise; null when healthy.
 */
export function crlStaleSeverity(input: { nextUpdate: Date | null; now: Date; consecutiveFailures: number }, options: { marginMs?: number; failureThreshold?: number } = {}): number | null {
  const marginMs = options.marginMs ?? DAY_MS;
  const failureThreshold = options.failureThreshold ?? 3;
  if (input.nextUpdate && input.nextUpdate.getTime() <= input.now.getTime()) return SEVERITY.CRITICAL;
  if (input.nextUpdate && input.nextUpdate.getTime() - input.now.getTime() <= marginMs) return SEVERITY.HIGH;
  if (input.consecutiveFailures >= failureThreshold) return SEVERITY.HIGH;
  return null;
}
