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
