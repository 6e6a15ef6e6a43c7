const DURATION_UNITS_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 } as const;

/** "45m", "12h", "30d", "2w" (a bare number is seconds) in milliseconds, or null: the one parser of durations. */
export function parseDuration(text: string): number | null {
  const m = /^(\d{1,9})\s*([smhdw]?)$/.exec(text.trim());
  if (!m) return null;
  return Number(m[1]) * DURATION_UNITS_MS[(m[2] || 's') as keyof typeof DURATION_UNITS_MS];
}
