/**
 * A scalar column value as text: strings as they are, numbers, bigints and booleans in their
 * decimal form, timestamps as ISO strings. Anything else (an object, an array) is a mapping bug,
 * not a value to print as "[object Object]".
 */
export const text = (v: unknown): string => {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return v.toISOString();
  throw new TypeError(`expected a scalar column value, got ${v === null ? 'null' : typeof v}`);
};
export const textOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : text(v));

/** A timestamp column as a Date, whichever driver read it (a Date, or its text). */
export const toDate = (v: unknown): Date => (v instanceof Date ? v : new Date(text(v)));
export const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : toDate(v));

/** Timestamps leave the storage layer as ISO strings, whichever driver read them. */
export const iso = (v: unknown): string => toDate(v).toISOString();
export const isoOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : iso(v));

/** Postgres unique_violation, as both drivers report it. */
export const isUniqueViolation = (e: unknown): boolean => (e as { code?: string })?.code === '23505';
