/**
 * A bound on how often the local broker reloads a large CRL (serve / worker; the broker agent has
 * the same bound, `--large-crl-bytes` / `--large-crl-reload-interval`). Mosquitto re-reads the
 * whole `crlfile` on SIGHUP and serves nobody meanwhile (about 1.6 s at 1M entries here, see
 * BENCHMARKS.md): when the CRL it last reloaded had at least `largeCrlBytes` bytes, the next
 * reload waits until `intervalMs` after that one. Calls made while a reload waits join it (one
 * reload, which reads the newest file: every revocation of the wait at once); a call made while
 * the broker is being signalled gets one more reload after it. 0 ms: no bound.
 *
 * The CRL file is always written first: only the reload waits, so a new connection is refused as
 * soon as that one reload has run (at most `intervalMs` after the previous one).
 */
import { statSync } from 'node:fs';
import type { Logger } from '../support/logger.ts';
import type { BrokerReloader } from './broker-reloader.ts';

export interface ReloadBoundOptions {
  /** Size in bytes of what the broker reloads (the CRL file); a failure counts as 0. */
  crlBytes: () => Promise<number>;
  largeCrlBytes: number;
  intervalMs: number;
  logger?: Logger;
  /** Seams for tests (fake timers work with the defaults too). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export const DEFAULT_LARGE_CRL_BYTES = 4 * 1024 * 1024;
export const DEFAULT_LARGE_CRL_RELOAD_INTERVAL_MS = 10_000;

/** Synchronous (microseconds): a thread-pool round trip would wait for the publication's busy main thread before the signal. */
export const fileBytes = (path: string) => async (): Promise<number> => statSync(path).size;

export function boundReloads(inner: BrokerReloader, options: ReloadBoundOptions): BrokerReloader {
  if (!inner.configured || options.intervalMs <= 0) return inner;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  /** When the last reload of a large CRL started; null when the last one was small. */
  let lastLargeAt: number | null = null;
  /** The reload that has not signalled the broker yet (callers join it). */
  let waiting: Promise<void> | null = null;
  /** The reload signalling the broker now (a caller gets one more after it). */
  let signalling: Promise<void> | null = null;

  async function runOnce(self: { promise: Promise<void> | null }, previous: Promise<void> | null): Promise<void> {
    let bytes = 0;
    try {
      if (previous) await previous.catch(() => undefined);
      if (lastLargeAt !== null) {
        const wait = lastLargeAt + options.intervalMs - now();
        if (wait > 0) {
          options.logger?.info({ event: 'broker_reload_deferred', ms: wait }, 'large CRL: the broker reload waits for the reload bound; revocations meanwhile share it');
          await sleep(wait);
        }
      }
      bytes = await options.crlBytes().catch(() => 0);
    } finally {
      if (waiting === self.promise) waiting = null;
    }
    const started = now();
    const run = inner.reload();
    signalling = run;
    try {
      await run;
      lastLargeAt = bytes >= options.largeCrlBytes ? started : null;
    } finally {
      if (signalling === run) signalling = null;
    }
  }

  return {
    configured: true,
    description: `${inner.description} (CRLs of ${options.largeCrlBytes} bytes or more: at most one reload per ${options.intervalMs} ms)`,
    reload() {
      if (waiting) return waiting;
      const self: { promise: Promise<void> | null } = { promise: null };
      self.promise = runOnce(self, signalling);
      waiting = self.promise;
      return waiting;
    },
  };
}
