/**
 * Revocation and CRL events between processes, over Postgres LISTEN/NOTIFY on one channel.
 *
 * - An API replica, after a revocation committed, sends `{"e":"revoked","at":<db ms>}`; `at`
 *   is the database clock after the commit, so a CRL whose build began at or after `at`
 *   (crl_state.built_at) already lists it and the worker may skip a rebuild.
 * - A publisher, after storing a new CRL, sends `{"e":"published","n":"<number>"}`; every
 *   other worker copies it to its own broker's file.
 * Every message names its sender (`src`), so a process ignores its own. In one process
 * (serve, or PGlite, which is always one process) the publisher is called directly instead.
 */
import { randomUUID } from 'node:crypto';
import type { RevocationListener } from '../app/ports.ts';
import type { Database } from './database.ts';
import type { Driver, Listening } from './driver.ts';
import type { Logger } from '../support/logger.ts';

export const CRL_CHANNEL = 'certfleet_crl';

export type CrlEvent = { e: 'revoked'; at: number; src: string } | { e: 'published'; n: string; src: string };

export interface RevocationEvents extends RevocationListener {
  /** Tells the other processes that CRL `crlNumber` was stored (no-op without NOTIFY). */
  crlPublished(crlNumber: bigint): void;
  /** Waits for the NOTIFYs in flight. */
  flush(): Promise<void>;
}

export interface RevocationEventsOptions {
  db: Database;
  /** This process's publisher, if it has one: called directly, at once. */
  local?: { revocationCommitted(): void } | null;
  /** Send NOTIFYs (pg: other processes may publish); false for PGlite. */
  notify: boolean;
  instanceId: string;
  logger: Logger;
}

export const newInstanceId = (): string => randomUUID();

/** The RevocationListener the use cases call after every committed revocation. */
export function createRevocationEvents(options: RevocationEventsOptions): RevocationEvents {
  const inFlight = new Set<Promise<unknown>>();
  const send = (sql: string, params: unknown[], what: string) => {
    if (!options.notify) return;
    const p = options.db
      .asOperator((tx) => tx.query(sql, params))
      .catch((error: Error) => options.logger.warn({ err: error.message, event: what }, 'could not NOTIFY the CRL publishers; the periodic refresh will catch up'))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  return {
    revocationCommitted() {
      options.local?.revocationCommitted();
      send(
        `SELECT pg_notify($1, json_build_object('e', 'revoked', 'src', $2::text,
           'at', floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)::text)`,
        [CRL_CHANNEL, options.instanceId],
        'revoked',
      );
    },
    crlPublished(crlNumber) {
      send(`SELECT pg_notify($1, json_build_object('e', 'published', 'src', $2::text, 'n', $3::text)::text)`, [CRL_CHANNEL, options.instanceId, crlNumber.toString()], 'published');
    },
    async flush() {
      await Promise.allSettled([...inFlight]);
    },
  };
}

export interface CrlEventHandlers {
  onRevoked(committedBefore: Date): void;
  onPublished(crlNumber: bigint): void;
  /** After each (re)connection, with the database clock: events before it may have been missed. */
  onConnected(databaseNow: Date): void;
}

/** LISTENs for other processes' CRL events (pg only; null when the driver cannot listen). */
export function listenForCrlEvents(driver: Driver, instanceId: string, handlers: CrlEventHandlers, logger: Logger): Listening | null {
  if (!driver.listen) return null;
  return driver.listen(CRL_CHANNEL, {
    onNotification(payload) {
      let event: CrlEvent;
      try {
        event = JSON.parse(payload) as CrlEvent;
      } catch {
        logger.warn({ payload: payload.slice(0, 200) }, 'ignoring a malformed CRL event');
        return;
      }
      if (event.src === instanceId) return;
      if (event.e === 'revoked' && Number.isFinite(event.at)) handlers.onRevoked(new Date(event.at));
      else if (event.e === 'published' && /^\d+$/.test(String(event.n))) handlers.onPublished(BigInt(event.n));
    },
    onConnected: (now) => handlers.onConnected(now),
    onError: (error) => logger.warn({ err: error.message }, 'CRL event listener lost its connection; reconnecting'),
  });
}
