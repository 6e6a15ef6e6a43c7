import { relativeTime as timeFromNow } from '../domain/wording.ts';

export { plural } from '../domain/wording.ts';

/** Human-readable by default, JSON with --json. */
export function print(flags: { json?: string | boolean }, human: string, data: unknown): void {
  console.log(flags.json ? JSON.stringify(data, null, 2) : human);
}

export type Cell = string | number | boolean | null | undefined;

/** An aligned text table; a column of numbers (with at least one) is right-aligned, every other column left-aligned. */
export function table(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i].length)));
  const numeric = headers.map((_, i) => rows.some((r) => typeof r[i] === 'number') && rows.every((r) => typeof r[i] === 'number' || r[i] === null || r[i] === undefined));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...text.map(line)].join('\n');
}

/** "in 12 days", "3 hours ago", "just now" (src/domain/wording.ts, shared with the web console); "-" for no time. */
export function relativeTime(at: Date | string | null | undefined, now: Date = new Date()): string {
  return at === null || at === undefined ? '-' : timeFromNow(at, now);
}

/** A scheduled revocation: "revokes in 2 hours", or "revocation due 5 minutes ago" once its time has passed. */
export function revocationSchedule(at: Date | string | null | undefined, now: Date = new Date()): string | null {
  if (at === null || at === undefined) return null;
  return new Date(at).getTime() > now.getTime() ? `revokes ${relativeTime(at, now)}` : `revocation due ${relativeTime(at, now)}`;
}

/** Key/value lines, aligned. */
export function details(pairs: [string, Cell][]): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 2;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}${v === null || v === undefined ? '-' : v}`).join('\n');
}
