/**
 * Counts and times as people read them, shared by the CLI (src/cli/output.ts), the API's messages
 * and the web console (web/src/format.ts): "1 certificate", "3 certificates", "in 23 hours",
 * "2 days ago". Never "certificate(s)", never "0 days" for 23 hours.
 */
import { DAY_MS, HOUR_MS, MINUTE_MS } from './clock.ts';

/** "1 certificate", "2 certificates", "0 devices"; `many` for irregular plurals. */
export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

const YEAR_MS = 365 * DAY_MS;

/**
 * The time from `now` to `at` in the largest unit that reads well: "just now" under a minute,
 * minutes under an hour, hours under 48 hours, days under 2 years, then whole years (rounded down:
 * "in 9 years" for 9 years and 10 months). "in …" ahead, "… ago" past.
 */
export function relativeTime(at: Date | string | number, now: Date | number): string {
  const ms = new Date(at).getTime() - new Date(now).getTime();
  const abs = Math.abs(ms);
  if (abs < MINUTE_MS) return 'just now';
  const text =
    abs < HOUR_MS
      ? plural(Math.round(abs / MINUTE_MS), 'minute')
      : abs < 48 * HOUR_MS
        ? plural(Math.round(abs / HOUR_MS), 'hour')
        : abs < 2 * YEAR_MS
          ? plural(Math.round(abs / DAY_MS), 'day')
          : plural(Math.floor(abs / YEAR_MS), 'year');
  return ms > 0 ? `in ${text}` : `${text} ago`;
}
