import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (text: string) => createHash('sha256').update(text).digest();

/** With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <METRICS_TOKEN>`; without it, /metrics is open. */
export function metricsAuthorized(authorization: string | undefined, token: string | null): boolean {
  if (token === null) return true;
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), digest(token));
}
