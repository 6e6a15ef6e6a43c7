import { components } from './api/openapi.json';
import { relativeTime } from '../../src/domain/wording.ts';

const DAY = 86_400_000;

export const daysLeft = (iso: string, now = Date.now()) => Math.floor((Date.parse(iso) - now) / DAY);
export const when = (iso: string | null | undefined) => (iso ? new Date(iso).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—');
export const shortFingerprint = (hex: string) => `${hex.slice(0, 8)}…${hex.slice(-8)}`;

/** The reasons the API accepts for a device certificate: its own OpenAPI schema (RevocationReason) is the one source. */
export const REVOCATION_REASON_NAMES: readonly string[] = components.schemas.RevocationReason.enum;

export const SEVERITY_NAMES: Record<number, string> = { 1: 'info', 2: 'low', 3: 'medium', 4: 'high', 5: 'critical' };

/** "1 device", "3 devices": the CLI's and the API's own helper (src/domain/wording.ts). */
export { plural } from '../../src/domain/wording.ts';

/** "in 23 hours", "in 45 days", "in 9 years", "3 days ago": time to (or since) a date, worded as the CLI words it (src/domain/wording.ts). */
export const timeLeft = (iso: string, now = Date.now()) => relativeTime(iso, now);
