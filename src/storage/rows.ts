/** Timestamps leave the storage layer as ISO strings, whichever driver read them. */
export const iso = (v: unknown): string => (v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString());
export const isoOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : iso(v));

/** Postgres unique_violation, as both drivers report it. */
export const isUniqueViolation = (e: unknown): boolean => (e as { code?: string })?.code === '23505';
