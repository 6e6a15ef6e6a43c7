/**
 * Closes the live MQTT sessions of revoked certificates, after the broker reloaded the CRL.
 *
 * Why: a CRL reload (SIGHUP) only affects new TLS handshakes; Mosquitto 2.0 keeps a revoked
 * device's existing connection open (docs/broker-sessions.md). The dynamic security plugin can
 * disconnect every session of a username (= certificate CN), see session-kicker.ts.
 *
 * Protocol, used by the CRL publication step:
 *   1. `revoked(commonNames)` when a CRL with new revocations was written (whether or not the
 *      reload that follows works): the CNs become pending.
 *   2. `afterReload()` after every *successful* broker reload: kicks every pending CN. The kick
 *      must come after the reload, otherwise the revoked device simply reconnects.
 * A kick that fails (admin listener down, wrong password) stays pending and is retried after the
 * next successful reload, up to `maxAttempts` times. Kicking a CN with no live session is harmless.
 * The kick also disconnects the device's *valid* certificate (same CN after a rotation); that
 * session reconnects at once, the revoked one is refused in the TLS handshake.
 */
import type { SessionKicker } from './session-kicker.ts';

/** pino/fastify-compatible subset. */
export interface RevokedSessionsLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error?(obj: Record<string, unknown>, msg: string): void;
}

export interface RevokedSessionsOptions {
  kicker: SessionKicker;
  log?: RevokedSessionsLogger;
  /** Give up on a CN after this many failed kicks. Default 5. */
  maxAttempts?: number;
  /** Bound on pending CNs (a broker that is down for long while thousands are revoked). Default 10 000. */
  maxPending?: number;
  /** Kicks in flight at once (each is one short admin connection). Default 4. */
  concurrency?: number;
}

export interface KickRound {
  kicked: string[];
  failed: Array<{ commonName: string; error: string; attempts: number }>;
  /** Failed too often: dropped (logged). */
  abandoned: string[];
}

export interface RevokedSessions {
  /** These CNs had a certificate revoked in the CRL just written: kick them after the next successful reload. */
  revoked(commonNames: Iterable<string>): void;
  /** Call after each successful broker reload: kicks every pending CN. Never throws. */
  afterReload(): Promise<KickRound>;
  /** CNs still waiting for a kick. */
  pending(): string[];
}

export function createRevokedSessions(options: RevokedSessionsOptions): RevokedSessions {
  const maxAttempts = options.maxAttempts ?? 5;
  const maxPending = options.maxPending ?? 10_000;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const log = options.log;
  /** CN → failed attempts so far (insertion order = oldest first). */
  const pending = new Map<string, number>();
  let running: Promise<KickRound> | null = null;

  function add(commonName: string) {
    if (!commonName || pending.has(commonName)) return;
    if (pending.size >= maxPending) {
      const oldest = pending.keys().next().value as string;
      pending.delete(oldest);
      log?.warn({ commonName: oldest, maxPending }, 'too many sessions waiting to be closed: dropped the oldest');
    }
    pending.set(commonName, 0);
  }

  async function round(): Promise<KickRound> {
    const result: KickRound = { kicked: [], failed: [], abandoned: [] };
    const queue = [...pending.keys()];
    const started = Date.now();
    const work = async () => {
      for (let cn = queue.shift(); cn !== undefined; cn = queue.shift()) {
        try {
          await options.kicker.kick(cn);
          pending.delete(cn);
          result.kicked.push(cn);
        } catch (error) {
          const attempts = (pending.get(cn) ?? 0) + 1;
          const message = (error as Error).message;
          if (attempts >= maxAttempts) {
            pending.delete(cn);
            result.abandoned.push(cn);
          } else if (pending.has(cn)) {
            pending.set(cn, attempts);
          }
          result.failed.push({ commonName: cn, error: message, attempts });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, work));
    if (result.kicked.length) {
      log?.info({ commonNames: result.kicked, ms: Date.now() - started }, 'closed the live broker sessions of revoked certificates');
    }
    if (result.failed.length) {
      log?.warn(
        { failed: result.failed, pending: pending.size },
        'could not close the live broker sessions of some revoked certificates; retrying after the next reload',
      );
    }
    if (result.abandoned.length) {
      (log?.error ?? log?.warn)?.call(
        log,
        { commonNames: result.abandoned, maxAttempts },
        'gave up closing live broker sessions of revoked certificates (they are still refused at their next connect)',
      );
    }
    return result;
  }

  return {
    revoked(commonNames) {
      for (const cn of commonNames) add(cn);
    },
    async afterReload() {
      // One round at a time; a reload during a round starts another round after it.
      while (running) await running.catch(() => undefined);
      if (pending.size === 0) return { kicked: [], failed: [], abandoned: [] };
      running = round();
      try {
        return await running;
      } finally {
        running = null;
      }
    },
    pending: () => [...pending.keys()],
  };
}
