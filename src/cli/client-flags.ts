import { parseDuration } from '../domain/duration.ts';
import { UsageError, type FlagSpec } from './spec.ts';

/** Flags every command that talks to a running certfleet takes. */
export const clientFlags: Record<string, FlagSpec> = {
  url: { type: 'string', value: 'URL', help: 'certfleet base URL (default: CERTFLEET_URL, then what "certfleet login" stored)' },
  token: { type: 'string', value: 'TOKEN', help: 'bearer token (default: CERTFLEET_TOKEN, then what "certfleet login" stored)' },
  json: { type: 'boolean', help: 'print JSON instead of a table' },
};

export const durationCheck = (value: string) => (parseDuration(value) === null ? 'a duration: a number with s, m, h, d or w (e.g. 45m, 12h, 30d, 2w)' : null);

/** A check for a whole number from min to max. */
export const intCheck =
  (min: number, max: number) =>
  (value: string): string | null => {
    const n = Number(value);
    return /^\d+$/.test(value.trim()) && Number.isInteger(n) && n >= min && n <= max ? null : `a whole number from ${min} to ${max}`;
  };

/** A check for a whole number, 0 or more. */
export const wholeNumberCheck = (value: string): string | null => (/^\d+$/.test(value.trim()) && Number.isSafeInteger(Number(value)) ? null : 'a whole number, 0 or more');

/** A flag's duration in milliseconds (the value was checked when the flags were parsed). */
export function durationMs(value: string | boolean | undefined, name: string): number | undefined {
  if (typeof value !== 'string') return undefined;
  const ms = parseDuration(value);
  if (ms === null) throw new UsageError(`--${name} must be ${durationCheck(value)} (got "${value}")`);
  return ms;
}

export const pageFlags: Record<string, FlagSpec> = {
  limit: { type: 'string', value: 'N', help: 'at most N rows (1-1000, default 100)', check: intCheck(1, 1000) },
  cursor: { type: 'string', value: 'CURSOR', help: 'continue after the page that printed this cursor' },
};

export function positiveInt(value: string | boolean | undefined, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be a whole number from 1 to ${max} (got "${String(value)}")`);
  return n;
}

export const str = (value: string | boolean | undefined): string | undefined => (typeof value === 'string' ? value : undefined);
