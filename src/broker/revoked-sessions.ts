/**
 * Closes the live MQTT sessions of revoked certificates, after the broker reloaded the CRL.
 *
 * Why: a CRL reload (SIGHUP) only affects new TLS handshakes; Mosquitto 2.0 keeps a revoked
 * device's existing connection open (docs/broker-sessions.md). The dynamic security plugin can
 * disconnect every session of a username (= certificate CN), see session-kicker.ts.
 *
 * `kick(commonNames)` must be called only after the broker has reloaded a CRL listing them,
 * otherwise the device simply reconnects. A kick that fails (admin listener down, wrong
 * password) is retried with backoff (2 s doubling to 5 min, `maxAttempts` in all); kicking a CN
 * with no live session is harmless. The kick also disconnects the device's *valid* certificate
 * (same CN after a rotation): that session reconnects at once, the revoked one is refused in the
 * TLS handshake.
 */
import type { Config } from '../config.ts';
import { readBrokerAdmin } from './admin-credentials.ts';
import type { SessionKicker } from './session-kicker.ts';
import { createBackoff } from '../support/backoff.ts';
import type { Logger } from '../support/logger.ts';

export interface RevokedSessionsOptions {
  kicker: SessionKicker;
  logger?: Logger;
  /** Give up on a CN after this many failed kicks. Default 10 (about 15 minutes of retries). */
  maxAttempts?: number;
  /** First retry delay; doubles up to maxRetryMs. Defaults 2 s and 5 min. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Bound on CNs waiting (a broker admin listener down while thousands are revoked). Default 10 000. */
  maxPending?: number;
  /** Kicks in flight at once (each is one short admin connection). Default 4. */
  concurrency?: number;
}

export interface KickRound {
  kicked: string[];
  failed: Array<{ commonName: string; error: string; attempts: number }>;
  /** Failed `maxAttempts` times: dropped (logged; the CRL still refuses them at the next connect). */
  abandoned: string[];
}

export interface RevokedSessions {
  /** The broker has just reloaded a CRL that newly lists certificates of these CNs: close their sessions. */
  kick(commonNames: Iterable<string>): Promise<KickRound>;
  /** CNs waiting for a retry. */
  pending(): string[];
  /** Resolves when no round runs (tests, shutdown). */
  idle(): Promise<void>;
  /** Stops retries, starts no further kick, and waits for the ones in flight. */
  close(): Promise<void>;
}

const EMPTY: KickRound = { kicked: [], failed: [], abandoned: [] };

export function createRevokedSessions(options: RevokedSessionsOptions): RevokedSessions {
  const maxAttempts = options.maxAttempts ?? 10;
  const retryMs = options.retryMs ?? 2000;
  const maxRetryMs = options.maxRetryMs ?? 5 * 60_000;
  const maxPending = options.maxPending ?? 10_000;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const log = options.logger;
  /** CN → failed attempts so far (insertion order = oldest first). */
  const pending = new Map<string, number>();
  let chain: Promise<unknown> = Promise.resolve();
  let retryTimer: NodeJS.Timeout | null = null;
  const backoff = createBackoff(retryMs, maxRetryMs);
  let closed = false;

  function add(commonName: string) {
    if (!commonName || pending.has(commonName)) return;
    if (pending.size >= maxPending) {
      const oldest = pending.keys().next().value as string;
      pending.delete(oldest);
      log?.warn({ commonName: oldest, maxPending }, 'too many broker sessions waiting to be closed: dropped the oldest');
    }
    pending.set(commonName, 0);
  }

  async function round(): Promise<KickRound> {
    if (pending.size === 0) return EMPTY;
    const result: KickRound = { kicked: [], failed: [], abandoned: [] };
    const queue = [...pending.keys()];
    const started = Date.now();
    const work = async () => {
      // After close() no new kick starts (shutdown waits for at most the ones in flight).
      for (let cn = queue.shift(); cn !== undefined && !closed; cn = queue.shift()) {
        try {
          await options.kicker.kick(cn);
          pending.delete(cn);
          result.kicked.push(cn);
        } catch (error) {
          const attempts = (pending.get(cn) ?? 0) + 1;
          if (attempts >= maxAttempts) {
            pending.delete(cn);
            result.abandoned.push(cn);
          } else {
            pending.set(cn, attempts);
          }
          result.failed.push({ commonName: cn, error: (error as Error).message, attempts });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, work));
    if (result.kicked.length) {
      log?.info({ event: 'broker_sessions_closed', common_names: result.kicked, ms: Date.now() - started }, 'closed the live broker sessions of revoked certificates');
    }
    if (result.failed.length) {
      log?.warn(
        { event: 'broker_kick_failed', failed: result.failed, pending: pending.size, retry_in_ms: pending.size ? backoff.current : null },
        'could not close the live broker sessions of revoked certificates; will retry',
      );
    }
    if (result.abandoned.length) {
      log?.error(
        { event: 'broker_kick_abandoned', common_names: result.abandoned, max_attempts: maxAttempts },
        'gave up closing live broker sessions of revoked certificates (they are still refused at their next connect)',
      );
    }
    if (result.failed.length === 0) backoff.reset();
    if (pending.size > 0) scheduleRetry();
    return result;
  }

  function scheduleRetry() {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      void enqueueRound();
    }, backoff.next());
    retryTimer.unref();
  }

  /** One round at a time, in order. */
  function enqueueRound(): Promise<KickRound> {
    const next = chain.then(round, round);
    chain = next.catch(() => undefined);
    return next;
  }

  return {
    kick(commonNames) {
      if (closed) return Promise.resolve(EMPTY);
      for (const cn of commonNames) add(cn);
      return enqueueRound();
    },
    pending: () => [...pending.keys()],
    idle: async () => {
      for (let seen: Promise<unknown> | null = null; seen !== chain; ) {
        seen = chain;
        await seen;
      }
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      await chain;
    },
  };
}

/**
 * The session step for BROKER_ADMIN_URL (null without it): BROKER_ADMIN_USERNAME,
 * BROKER_ADMIN_PASSWORD_FILE and BROKER_ADMIN_CA_FILE are read at each kick (a rotated password
 * is picked up without a restart); mqtt is imported only when kicking is configured.
 */
export function revokedSessionsFor(config: Partial<Pick<Config, 'brokerAdmin'>>, log?: Logger): RevokedSessions | null {
  const admin = config.brokerAdmin;
  if (!admin) return null;
  const kicker: SessionKicker = {
    async kick(commonName) {
      const [{ createSessionKicker }, connection] = await Promise.all([import('./session-kicker.ts'), readBrokerAdmin(admin)]);
      return createSessionKicker(connection).kick(commonName);
    },
  };
  return createRevokedSessions({ kicker, logger: log });
}
