import { UsageError, type FlagSpec } from './spec.ts';

/** Flags every command that talks to a running certfleet takes. */
export const clientFlags: Record<string, FlagSpec> = {
  url: { type: 'string', value: 'URL', help: 'certfleet base URL (default: CERTFLEET_URL, then what "certfleet login" stored)' },
  token: { type: 'string', value: 'TOKEN', help: 'bearer token (default: CERTFLEET_TOKEN, then what "certfleet login" stored)' },
  json: { type: 'boolean', help: 'print JSON instead of a table' },
};

export const pageFlags: Record<string, FlagSpec> = {
  limit: { type: 'string', value: 'N', help: 'at most N rows (1-1000, default 100)' },
  cursor: { type: 'string', value: 'CURSOR', help: 'continue after the page that printed this cursor' },
};

export function positiveInt(value: string | boolean | undefined, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new UsageError(`--${name} must be an integer from 1 to ${max}`);
  return n;
}

export const str = (value: string | boolean | undefined): string | undefined => (typeof value === 'string' ? value : undefined);
