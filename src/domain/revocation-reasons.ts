import { AppError } from './errors.ts';

/** RFC 5280 section 5.3.1 CRLReason codes (7 is unused by the RFC). */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  removeFromCRL: 8,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;

export type ReasonName = keyof typeof REVOCATION_REASONS;

/** Words users send that mean an RFC reason (the seed's verification revokes with "rotated"). */
const ALIASES: Record<string, ReasonName> = {
  rotated: 'superseded',
  rotation: 'superseded',
  compromised: 'keyCompromise',
  decommissioned: 'cessationOfOperation',
};

const BY_LOWER = new Map<string, ReasonName>(
  Object.keys(REVOCATION_REASONS).map((name) => [name.toLowerCase(), name as ReasonName]),
);

/** The RFC reason a stored reason text stands for; free text is `unspecified`. */
export function reasonNameFor(text: string | null | undefined): ReasonName {
  if (!text) return 'unspecified';
  const key = text.trim().toLowerCase().replace(/[\s_-]+/g, '');
  return BY_LOWER.get(key) ?? ALIASES[key] ?? 'unspecified';
}

export function reasonCodeFor(text: string | null | undefined): number {
  return REVOCATION_REASONS[reasonNameFor(text)];
}

/**
 * Reasons a device (end-entity) certificate may be revoked with. certificateHold and
 * removeFromCRL are refused: certfleet has no release, so a hold would be a revocation
 * that says it is temporary. cACompromise and aACompromise describe an issuer, not a device.
 */
const REFUSED: Partial<Record<ReasonName, string>> = {
  certificateHold: 'certificateHold is not supported: a revocation is final here (there is no release); use a final reason such as cessationOfOperation',
  removeFromCRL: 'removeFromCRL only exists in delta CRLs to release a hold; a revocation is final here',
  cACompromise: 'cACompromise is for CA certificates; a device certificate cannot be revoked with it (use keyCompromise)',
  aACompromise: 'aACompromise is for attribute authorities; a device certificate cannot be revoked with it (use keyCompromise)',
};

/** The reason names a device certificate may be revoked with (what the API offers; free text is also taken). */
export const END_ENTITY_REASON_NAMES = (Object.keys(REVOCATION_REASONS) as ReasonName[]).filter((name) => REFUSED[name] === undefined);

/** The longest free-text reason the API takes (its request schema's maxLength). */
export const MAX_REASON_TEXT_LENGTH = 200;

/** Why a device certificate cannot be revoked with `text` (a reason name, alias or free text), or null when it can. */
export function endEntityReasonRefusal(text: string): string | null {
  return REFUSED[reasonNameFor(text)] ?? null;
}

export function assertEndEntityReason(text: string): void {
  const refused = endEntityReasonRefusal(text);
  if (refused) throw new AppError('REVOCATION_REASON_NOT_ALLOWED', refused, { reason: text.slice(0, MAX_REASON_TEXT_LENGTH), crl_reason: reasonNameFor(text) });
}

