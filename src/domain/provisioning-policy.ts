import { AppError } from './errors.ts';
import { assertCommonNameFits, assertDeviceId, assertNotReserved } from './identifiers.ts';

/**
 * A tenant's provisioning policy for factory (claim) onboarding: which claim certificates are
 * admitted, how the device id is derived from one, the site new devices get, and an optional
 * approval webhook. Pure: validation and evaluation only.
 */
export const DEVICE_ID_SOURCES = ['cn', 'san_dns', 'san_uri', 'san_email', 'serial'] as const;
export type DeviceIdSource = (typeof DEVICE_ID_SOURCES)[number];

export interface ProvisioningPolicy {
  /** Both empty: every claim certificate of a registered claim CA. Else: a CN pattern OR a serial matches. */
  admit: { cn_patterns: string[]; serials: string[] };
  /** The device id: the claim certificate's field `from`, or the first capture group of `pattern` applied to it. */
  device_id: { from: DeviceIdSource; pattern: string | null };
  /** site_id of the devices registered by onboarding. */
  site_id: string | null;
  /** Called for every request the policy admits; a refusal or no answer within timeout_ms refuses it. */
  approval_webhook: { url: string; timeout_ms: number } | null;
}

export const DEFAULT_PROVISIONING_POLICY: ProvisioningPolicy = {
  admit: { cn_patterns: [], serials: [] },
  device_id: { from: 'cn', pattern: null },
  site_id: null,
  approval_webhook: null,
};

export const MAX_CN_PATTERNS = 100;
export const MAX_PATTERN_LENGTH = 128;
export const MAX_ADMITTED_SERIALS = 10_000;
export const MAX_DEVICE_ID_REGEX_LENGTH = 200;
export const MIN_APPROVAL_TIMEOUT_MS = 100;
/** Below the EST listener's request timeout, so the device gets the refusal, not a cut connection. */
export const MAX_APPROVAL_TIMEOUT_MS = 25_000;
export const DEFAULT_APPROVAL_TIMEOUT_MS = 10_000;

const invalid = (message: string) => new AppError('VALIDATION_FAILED', message);

/** Serial numbers compare as lowercase hex without separators or leading zeros (as certfleet stores them). */
export function normalizeSerial(serial: string): string | null {
  const hex = serial.replace(/[:\s]/g, '').toLowerCase();
  if (!/^[0-9a-f]{1,64}$/.test(hex)) return null;
  return hex.replace(/^0+(?=.)/, '');
}

/** `*` any run of characters, `?` one character; everything else literal; the whole CN must match. */
export function cnPatternRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\*?]/g, (c) => (c === '*' ? '.*' : c === '?' ? '.' : `\\${c}`));
  return new RegExp(`^${body}$`, 's');
}

/** The input of PUT /provisioning-policy (shape already checked by the route's schema) as a policy, or VALIDATION_FAILED. */
export function validateProvisioningPolicy(input: {
  admit?: { cn_patterns?: string[]; serials?: string[] };
  device_id?: { from?: DeviceIdSource; pattern?: string | null };
  site_id?: string | null;
  approval_webhook?: { url: string; timeout_ms?: number } | null;
}): ProvisioningPolicy {
  const cnPatterns = input.admit?.cn_patterns ?? [];
  if (cnPatterns.length > MAX_CN_PATTERNS) throw invalid(`admit.cn_patterns holds at most ${MAX_CN_PATTERNS} patterns`);
  for (const p of cnPatterns) {
    if (p.length === 0 || p.length > MAX_PATTERN_LENGTH) throw invalid(`each admit.cn_patterns entry is 1 to ${MAX_PATTERN_LENGTH} characters`);
  }
  const serials = (input.admit?.serials ?? []).map((s) => {
    const n = normalizeSerial(s);
    if (n === null) throw invalid(`admit.serials: "${s.slice(0, 80)}" is not a hexadecimal serial number`);
    return n;
  });
  if (serials.length > MAX_ADMITTED_SERIALS) throw invalid(`admit.serials holds at most ${MAX_ADMITTED_SERIALS} serial numbers`);
  const from = input.device_id?.from ?? 'cn';
  if (!DEVICE_ID_SOURCES.includes(from)) throw invalid(`device_id.from must be one of ${DEVICE_ID_SOURCES.join(', ')}`);
  const pattern = input.device_id?.pattern ?? null;
  if (pattern !== null) {
    if (pattern.length === 0 || pattern.length > MAX_DEVICE_ID_REGEX_LENGTH) throw invalid(`device_id.pattern is 1 to ${MAX_DEVICE_ID_REGEX_LENGTH} characters`);
    let re: RegExp;
    try {
      re = new RegExp(pattern);
    } catch (e) {
      throw invalid(`device_id.pattern is not a valid regular expression: ${(e as Error).message}`);
    }
    // One capture group at least: the device id is the first one.
    if (new RegExp(`${re.source}|`).exec('')!.length < 2) throw invalid('device_id.pattern needs a capture group: the device id is what the first group matches');
  }
  const siteId = input.site_id ?? null;
  if (siteId !== null && (siteId.length === 0 || siteId.length > 128)) throw invalid('site_id is 1 to 128 characters');
  let approval: ProvisioningPolicy['approval_webhook'] = null;
  if (input.approval_webhook) {
    const timeout = input.approval_webhook.timeout_ms ?? DEFAULT_APPROVAL_TIMEOUT_MS;
    if (!Number.isInteger(timeout) || timeout < MIN_APPROVAL_TIMEOUT_MS || timeout > MAX_APPROVAL_TIMEOUT_MS) {
      throw invalid(`approval_webhook.timeout_ms must be an integer from ${MIN_APPROVAL_TIMEOUT_MS} to ${MAX_APPROVAL_TIMEOUT_MS}`);
    }
    approval = { url: input.approval_webhook.url, timeout_ms: timeout };
  }
  return {
    admit: { cn_patterns: [...new Set(cnPatterns)], serials: [...new Set(serials)] },
    device_id: { from, pattern },
    site_id: siteId,
    approval_webhook: approval,
  };
}

/** What a policy reads of a claim certificate. */
export interface ClaimFacts {
  commonName: string | null;
  /** Lowercase hex without leading zeros. */
  serialHex: string;
  san: { dns: string[]; uri: string[]; email: string[] };
}

export function isAdmitted(policy: ProvisioningPolicy, claim: ClaimFacts): boolean {
  const { cn_patterns: patterns, serials } = policy.admit;
  if (patterns.length === 0 && serials.length === 0) return true;
  if (serials.includes(claim.serialHex)) return true;
  const cn = claim.commonName;
  return cn !== null && patterns.some((p) => cnPatternRegExp(p).test(cn));
}

/** Runs a tenant's regular expression (the caller bounds its running time); the first capture group, or null. */
export type CaptureRunner = (pattern: string, value: string) => string | null;

const plainCapture: CaptureRunner = (pattern, value) => new RegExp(pattern).exec(value)?.[1] ?? null;

/**
 * The device id the policy derives from a claim certificate; INVALID_DEVICE_ID (or RESERVED_ID)
 * when the field is missing or the result breaks the id rules of identifiers.ts.
 */
export function deriveDeviceId(policy: ProvisioningPolicy, tenantId: string, claim: ClaimFacts, capture: CaptureRunner = plainCapture): string {
  const { from, pattern } = policy.device_id;
  const candidates = from === 'cn' ? (claim.commonName === null ? [] : [claim.commonName]) : from === 'serial' ? [claim.serialHex] : claim.san[from.slice(4) as 'dns' | 'uri' | 'email'];
  if (candidates.length === 0) {
    throw new AppError('INVALID_DEVICE_ID', `the claim certificate has no ${from.replace('_', ' ').toUpperCase()} to derive the device id from (provisioning policy device_id.from)`);
  }
  let deviceId: string | null = null;
  for (const value of candidates) {
    deviceId = pattern === null ? value : capture(pattern, value);
    if (deviceId !== null) break;
  }
  if (deviceId === null || deviceId === '') {
    throw new AppError('INVALID_DEVICE_ID', `the provisioning policy's device_id.pattern does not match the claim certificate's ${from}`, { source: from });
  }
  assertDeviceId(deviceId);
  assertNotReserved(tenantId, deviceId);
  assertCommonNameFits(tenantId, deviceId);
  return deviceId;
}
