/**
 * The CRL bundle a broker node applies (GET /pki/crl-bundle.pem, certfleet broker-agent): the
 * file variant (no Issuing Distribution Point, what CRL_OUTPUT_PATH holds) of the latest CRL of
 * every CA a broker trusts (staged, active, retiring), PEM, concatenated, in the trust set's order;
 * `issuers` is read at every load, so a CA staged or retired changes the bundle (and its ETag).
 *
 * The seam with the CRL pipeline is two calls: `latest()` (read) and `published()` (an event:
 * a CRL was stored, by this process or, via NOTIFY, another one). Agents long-poll with
 * `waitForChange(etag)`: waiting costs no database query; one `published()` reloads once for
 * every waiter (and does nothing while none waits). A slow re-check (one read for all waiters, only while some wait) covers a
 * process that hears no events (an API replica without LISTEN).
 */
import { createHash } from 'node:crypto';
import { crlDerToPemBytes } from './verify-crl.ts';

export interface CrlBundleIssuer {
  /** The CA's key id (the crl_state row). */
  issuerKeyId: string;
  /** Cheap: the stored CRL's SHA-256 and number (metadata row only); null before the first publication. */
  readVersion(): Promise<{ sha256: string; crlNumber: bigint } | null>;
  /** The stored CRL's file variant (DER). */
  loadFileDer(): Promise<Uint8Array | null>;
}

export interface CrlBundle {
  /** Quoted ETag value (without quotes): changes whenever any CRL of the bundle does. */
  etag: string;
  crls: Array<{ issuerKeyId: string; crlNumber: bigint }>;
  pem: Buffer;
}

export interface CrlBundleSource {
  /** The current bundle; null while no CA has a CRL yet (a CA without one is left out). */
  latest(): Promise<CrlBundle | null>;
  /** A CRL was stored (this process or another): wake the waiting agents. */
  published(): void;
  /** Resolves with the bundle once its ETag differs from `etag`, or null after `timeoutMs` (or when `signal` aborts). */
  waitForChange(etag: string, timeoutMs: number, signal?: AbortSignal): Promise<CrlBundle | null>;
  /** Agents waiting now (metrics, tests). */
  waiting(): number;
  close(): void;
}

interface Waiter {
  etag: string;
  resolve(bundle: CrlBundle | null): void;
  timer: NodeJS.Timeout;
}

export function createCrlBundleSource(options: { issuers: CrlBundleIssuer[] | (() => CrlBundleIssuer[]); recheckMs?: number; onError?(error: unknown): void }): CrlBundleSource {
  const issuers = typeof options.issuers === 'function' ? options.issuers : () => options.issuers as CrlBundleIssuer[];
  const recheckMs = options.recheckMs ?? 30_000;
  const cache = new Map<string, { sha256: string; crlNumber: bigint; pem: Buffer }>();
  let current: CrlBundle | null = null;
  let loading: Promise<CrlBundle | null> | null = null;
  const waiters = new Set<Waiter>();
  let recheck: NodeJS.Timeout | null = null;

  async function load(): Promise<CrlBundle | null> {
    const parts: Array<{ issuerKeyId: string; crlNumber: bigint; pem: Buffer; sha256: string }> = [];
    for (const issuer of issuers()) {
      const version = await issuer.readVersion();
      // A CA without a CRL yet (just staged) is left out: brokers add it to their cafile only once its CRL is in the bundle.
      if (!version) continue;
      let hit = cache.get(issuer.issuerKeyId);
      if (!hit || hit.sha256 !== version.sha256) {
        const der = await issuer.loadFileDer();
        if (!der) continue;
        hit = { sha256: version.sha256, crlNumber: version.crlNumber, pem: crlDerToPemBytes(der) };
        cache.set(issuer.issuerKeyId, hit);
      }
      parts.push({ issuerKeyId: issuer.issuerKeyId, ...hit });
    }
    if (parts.length === 0) return null;
    const etag = createHash('sha256').update(parts.map((p) => p.sha256).join(',')).digest('hex');
    if (current?.etag === etag) return current;
    current = { etag, crls: parts.map((p) => ({ issuerKeyId: p.issuerKeyId, crlNumber: p.crlNumber })), pem: Buffer.concat(parts.map((p) => p.pem)) };
    return current;
  }

  const latest = () =>
    (loading ??= load().finally(() => {
      loading = null;
    }));

  function settle(bundle: CrlBundle | null) {
    if (!bundle) return;
    for (const w of waiters) {
      if (w.etag !== bundle.etag) {
        clearTimeout(w.timer);
        waiters.delete(w);
        w.resolve(bundle);
      }
    }
    if (waiters.size === 0 && recheck) {
      clearInterval(recheck);
      recheck = null;
    }
  }

  const refresh = () =>
    void latest().then(settle, (error) => {
      options.onError?.(error);
    });

  return {
    latest,
    // Only while agents wait: otherwise the next latest() builds it (a process that serves no agent,
    // e.g. `worker --once`, never PEM-encodes and concatenates tens of MB for nobody).
    published: () => {
      if (waiters.size > 0) refresh();
    },
    async waitForChange(etag, timeoutMs, signal) {
      const now = await latest();
      if (now && now.etag !== etag) return now;
      if (signal?.aborted) return null;
      return new Promise<CrlBundle | null>((resolve) => {
        const waiter: Waiter = {
          etag,
          resolve,
          timer: setTimeout(() => {
            waiters.delete(waiter);
            resolve(null);
          }, timeoutMs),
        };
        waiters.add(waiter);
        signal?.addEventListener(
          'abort',
          () => {
            clearTimeout(waiter.timer);
            waiters.delete(waiter);
            resolve(null);
          },
          { once: true },
        );
        if (!recheck) {
          recheck = setInterval(refresh, recheckMs);
          recheck.unref();
        }
      });
    },
    waiting: () => waiters.size,
    close() {
      if (recheck) clearInterval(recheck);
      recheck = null;
      for (const w of waiters) {
        clearTimeout(w.timer);
        w.resolve(null);
      }
      waiters.clear();
    },
  };
}
