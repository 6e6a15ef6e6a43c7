/**
 * The CRL publication trigger: coalesces revocations into publications, and runs each one
 * end to end (build → verify → store → verify → file → broker reload).
 *
 * - `revocationCommitted()` starts a publication at once when idle; revocations that arrive
 *   while one runs mark it dirty, and exactly one more publication runs after it (with all
 *   of them, since it reads the database afresh).
 * - `publishNow()` (the periodic refresh) always builds a new CRL; `publishIfStale()` only
 *   when the stored one is older than the refresh interval or its nextUpdate is near.
 * - `syncFile()` (another replica published) copies the stored CRL to this replica's file.
 * Everything runs one at a time on one queue, so the file is never written twice at once.
 * A failure is logged, counted and retried with backoff; so is a broker reload failure.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../domain/clock.ts';
import type { PublishCondition, PublishCrl, PublishCrlResult } from '../app/publish-crl.ts';
import type { StoredCrlInfo } from '../app/storage-ports.ts';
import type { CrlFileSync, CrlFileSyncResult, CrlForFile } from './crl-file-sync.ts';
import { createBackoff } from '../support/backoff.ts';
import type { Logger } from '../support/logger.ts';


export interface CrlPublisherDeps {
  publish: PublishCrl;
  /** The stored CRL's metadata, and the DER of its file variant (for a file sync when another replica built it). */
  readStored(): Promise<StoredCrlInfo | null>;
  loadStoredDer(): Promise<Uint8Array | null>;
  /** null: this process keeps no file (API replica without a worker). */
  fileSync: CrlFileSync | null;
  clock: Clock;
  logger: Logger;
  metrics?: Registry;
  /** publishIfStale builds when the stored CRL is this old (about CRL_REFRESH_MINUTES), or its nextUpdate is this close. */
  staleAfterMs: number;
  /** Told after every new CRL was stored (e.g. NOTIFY the other replicas, refresh the HTTP cache). */
  onPublished?(result: Extract<PublishCrlResult, { published: true }>): void;
  /** First retry delay after a failure (doubles up to maxRetryMs). Default 2 s. */
  retryMs?: number;
  maxRetryMs?: number;
}

/** What one run did. */
export interface CrlPublication {
  /** A new CRL was built and stored (false: the stored one was already good, or only the file was synced). */
  published: boolean;
  crlNumber: bigint | null;
  entries: number | null;
  bytes: number | null;
  nextUpdate: Date | null;
  /** The run, database to file on disk and CRL stored. */
  ms: number;
  /** From the start of the run until this publication's file was on disk (null: no file written). */
  toFileMs: number | null;
  file: CrlFileSyncResult | null;
}

export interface CrlPublisherStatus {
  running: boolean;
  lastSuccessAt: Date | null;
  lastError: string | null;
  consecutiveFailures: number;
  crlNumber: bigint | null;
  nextUpdate: Date | null;
  fileNumber: bigint | null;
  reloadPending: boolean;
  runs: number;
  publications: number;
}

export interface CrlPublisher {
  /** A revocation committed. `committedBefore` (database time, from a NOTIFY): skip if the stored CRL was built after it. */
  revocationCommitted(hint?: { committedBefore?: Date }): void;
  /** Builds and publishes a new CRL (after the running one, if any). */
  publishNow(): Promise<CrlPublication>;
  /** Builds only when the stored CRL is missing, older than the refresh interval, or expired; syncs the file either way. */
  publishIfStale(): Promise<CrlPublication>;
  /** Makes the file match the stored CRL (another replica published `crlNumber`). */
  syncFile(crlNumber?: bigint): void;
  /** Resolves when nothing runs and nothing is queued. */
  idle(): Promise<void>;
  status(): CrlPublisherStatus;
  /** Stops timers, drops queued work, waits for the running publication. */
  stop(): Promise<void>;
}

type Condition = PublishCondition | 'always' | null;

interface Waiter {
  resolve(value: CrlPublication): void;
  reject(error: unknown): void;
}

interface Request {
  publish: Condition;
  sync: boolean;
  waiters: Waiter[];
}

/** Both conditions must hold to skip: the later builtAfter, the shorter age. */
function merge(a: Condition, b: Condition): Condition {
  if (a === 'always' || b === 'always') return 'always';
  if (a === null) return b;
  if (b === null) return a;
  const builtAfter =
    a.builtAfter && b.builtAfter ? (a.builtAfter > b.builtAfter ? a.builtAfter : b.builtAfter) : (a.builtAfter ?? b.builtAfter);
  const youngerThanMs =
    a.youngerThanMs !== undefined && b.youngerThanMs !== undefined ? Math.min(a.youngerThanMs, b.youngerThanMs) : (a.youngerThanMs ?? b.youngerThanMs);
  return { ...(builtAfter ? { builtAfter } : {}), ...(youngerThanMs !== undefined ? { youngerThanMs } : {}) };
}

function metric<T>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => T): T {
  const existing = registry?.getSingleMetric(name);
  return (existing as T | undefined) ?? make(registry ? [registry] : []);
}

function createMetrics(registry: Registry | undefined) {
  return {
    number: metric(registry, 'certfleet_crl_number', (registers) => new Gauge({ name: 'certfleet_crl_number', help: 'CRL Number of the latest published CRL', registers })),
    entries: metric(registry, 'certfleet_crl_entries', (registers) => new Gauge({ name: 'certfleet_crl_entries', help: 'Revoked certificates listed in the latest CRL', registers })),
    nextUpdate: metric(registry, 'certfleet_crl_next_update_timestamp_seconds', (registers) =>
      new Gauge({ name: 'certfleet_crl_next_update_timestamp_seconds', help: 'nextUpdate of the latest CRL (Unix time); Mosquitto refuses every client after it', registers }),
    ),
    duration: metric(registry, 'certfleet_crl_publish_duration_seconds', (registers) =>
      new Histogram({
        name: 'certfleet_crl_publish_duration_seconds',
        help: 'A CRL publication, database to verified file on disk',
        buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers,
      }),
    ),
    runs: metric(registry, 'certfleet_crl_publications_total', (registers) =>
      new Counter({ name: 'certfleet_crl_publications_total', help: 'CRL publication runs by result (published, unchanged, failed)', labelNames: ['result'], registers }),
    ) as Counter<'result'>,
    reloadFailures: metric(registry, 'certfleet_crl_broker_reload_failures_total', (registers) =>
      new Counter({ name: 'certfleet_crl_broker_reload_failures_total', help: 'Broker reloads that failed after a CRL file was written (retried)', registers }),
    ),
  };
}

export function createCrlPublisher(deps: CrlPublisherDeps): CrlPublisher {
  const metrics = createMetrics(deps.metrics);
  const retryMs = deps.retryMs ?? 2000;
  const maxRetryMs = deps.maxRetryMs ?? 5 * 60_000;
  let pending: Request | null = null;
  let running: Promise<void> | null = null;
  let stopped = false;
  let retryTimer: NodeJS.Timeout | null = null;
  let retryRequest: { publish: Condition; sync: boolean } | null = null;
  const failureBackoff = createBackoff(retryMs, maxRetryMs);
  const reloadBackoff = createBackoff(retryMs, maxRetryMs);
  const idleWaiters: Array<() => void> = [];
  const state: CrlPublisherStatus = {
    running: false,
    lastSuccessAt: null,
    lastError: null,
    consecutiveFailures: 0,
    crlNumber: null,
    nextUpdate: null,
    fileNumber: null,
    reloadPending: false,
    runs: 0,
    publications: 0,
  };

  function enqueue(publish: Condition, sync: boolean, waiter?: Waiter) {
    if (stopped) {
      waiter?.reject(new Error('the CRL publisher is stopped'));
      return;
    }
    if (pending) {
      pending.publish = merge(pending.publish, publish);
      pending.sync ||= sync;
      if (waiter) pending.waiters.push(waiter);
    } else {
      pending = { publish, sync, waiters: waiter ? [waiter] : [] };
    }
    if (!running) running = drain();
  }

  const request = (publish: Condition, sync: boolean) =>
    new Promise<CrlPublication>((resolve, reject) => enqueue(publish, sync, { resolve, reject }));

  async function drain() {
    state.running = true;
    try {
      while (pending && !stopped) {
        const current: Request = pending;
        pending = null;
        try {
          const outcome = await runOnce(current);
          for (const w of current.waiters) w.resolve(outcome);
        } catch (error) {
          onFailure(current, error);
          for (const w of current.waiters) w.reject(error);
        }
      }
    } finally {
      state.running = false;
      running = null;
      if (!pending) for (const resolve of idleWaiters.splice(0)) resolve();
    }
  }

  async function runOnce(req: Request): Promise<CrlPublication> {
    const started = performance.now();
    state.runs++;
    let result: PublishCrlResult | null = null;
    let forFile: CrlForFile | null = null;
    let stored: StoredCrlInfo | null = null;
    const load = async () => deps.loadStoredDer();
    let fileWrite: Promise<CrlFileSyncResult> | null = null;
    let fileWrittenAt: number | null = null;
    const timed = (write: Promise<CrlFileSyncResult>) =>
      write.then((r) => {
        if (r.file === 'written') fileWrittenAt = performance.now();
        return r;
      });
    if (req.publish !== null) {
      const fileSync = deps.fileSync;
      // The file's number is a floor: if the database was restored from an older backup, numbers still go up for the broker.
      const minNumber = (await fileSync?.claimedNumber()) ?? undefined;
      result = await deps.publish({
        unless: req.publish === 'always' ? undefined : req.publish,
        minNumber,
        // Written as soon as it is verified, while the database stores the CRL.
        writeFile: fileSync ? (crl) => (fileWrite = timed(fileSync.sync({ ...crl, verified: true }))) : undefined,
      });
      stored = result.stored;
      forFile = result.published ? { crlNumber: result.crl.crlNumber, der: result.crl.fileDer } : { crlNumber: stored.crlNumber, load };
      if (result.published) deps.onPublished?.(result);
    } else {
      stored = await deps.readStored();
      if (stored) forFile = { crlNumber: stored.crlNumber, load };
    }
    let file: CrlFileSyncResult | null = null;
    if (deps.fileSync && forFile) {
      try {
        file = await (fileWrite ?? timed(deps.fileSync.sync(forFile)));
      } catch (error) {
        // The CRL is stored; only the file is behind: retry the file, not the publication.
        throw Object.assign(error as Error, { fileOnly: true });
      }
    }
    const ms = performance.now() - started;

    const published = result?.published === true;
    state.consecutiveFailures = 0;
    state.lastError = null;
    state.lastSuccessAt = deps.clock.now();
    failureBackoff.reset();
    if (stored && stored.sha256 !== null) {
      state.crlNumber = stored.crlNumber;
      state.nextUpdate = stored.nextUpdate;
      metrics.number.set(Number(stored.crlNumber));
      if (stored.entries !== null) metrics.entries.set(stored.entries);
      if (stored.nextUpdate) metrics.nextUpdate.set(Math.floor(stored.nextUpdate.getTime() / 1000));
    }
    if (file) {
      state.fileNumber = file.fileNumber;
      state.reloadPending = deps.fileSync?.reloadPending ?? false;
      if (file.reloaded === false) {
        metrics.reloadFailures.inc();
        scheduleRetry({ publish: null, sync: true }, reloadBackoff.next());
      } else if (file.reloaded === true) {
        reloadBackoff.reset();
      }
    }
    if (req.publish !== null) metrics.runs.inc({ result: published ? 'published' : 'unchanged' });
    if (published && result?.published) {
      state.publications++;
      metrics.duration.observe(ms / 1000);
      const { crl } = result;
      deps.logger.info(
        {
          event: 'crl_published',
          crl_number: crl.crlNumber.toString(),
          entries: crl.entries,
          bytes: crl.der.length,
          ms: Math.round(ms),
          to_file_ms: fileWrittenAt === null ? null : Math.round(fileWrittenAt - started),
          entries_ms: Math.round(crl.timings.entriesMs),
          sign_ms: Math.round(crl.timings.signMs),
          verify_ms: Math.round(crl.timings.verifyMs),
          store_ms: Math.round(crl.timings.storeMs),
          file_ms: file?.writeMs !== undefined ? Math.round(file.writeMs) : null,
          file: file?.file ?? null,
          this_update: crl.thisUpdate.toISOString(),
          next_update: crl.nextUpdate.toISOString(),
          broker_reloaded: file?.reloaded ?? null,
        },
        'CRL published',
      );
    } else if (file?.file === 'written') {
      deps.logger.info({ event: 'crl_file_synced', crl_number: String(file.fileNumber), bytes: file.bytes, ms: Math.round(ms), broker_reloaded: file.reloaded }, 'CRL file updated from the stored CRL');
    }
    return {
      published,
      crlNumber: stored && stored.sha256 !== null ? stored.crlNumber : null,
      entries: stored?.entries ?? null,
      bytes: published && result?.published ? result.crl.der.length : (stored?.bytes ?? null),
      nextUpdate: stored?.nextUpdate ?? null,
      ms,
      toFileMs: fileWrittenAt === null ? null : (fileWrittenAt as number) - started,
      file,
    };
  }

  function onFailure(req: Request, error: unknown) {
    state.consecutiveFailures++;
    state.lastError = (error as Error)?.message ?? String(error);
    if (req.publish !== null) metrics.runs.inc({ result: 'failed' });
    deps.logger.error(
      { event: 'crl_publish_failed', err: state.lastError, code: (error as { code?: string })?.code, consecutive_failures: state.consecutiveFailures, retry_in_ms: failureBackoff.current },
      'CRL publication failed; the previous CRL stays in place',
    );
    const fileOnly = (error as { fileOnly?: boolean })?.fileOnly === true;
    scheduleRetry({ publish: fileOnly ? null : req.publish, sync: true }, failureBackoff.next());
  }

  function scheduleRetry(req: { publish: Condition; sync: boolean }, delay: number) {
    if (stopped) return;
    retryRequest = retryRequest ? { publish: merge(retryRequest.publish, req.publish), sync: retryRequest.sync || req.sync } : req;
    if (retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      const r = retryRequest;
      retryRequest = null;
      if (r) enqueue(r.publish, r.sync);
    }, delay);
    retryTimer.unref();
  }

  return {
    revocationCommitted(hint) {
      enqueue(hint?.committedBefore ? { builtAfter: hint.committedBefore } : 'always', true);
    },
    publishNow: () => request('always', true),
    publishIfStale: () => request({ youngerThanMs: deps.staleAfterMs }, true),
    syncFile(crlNumber) {
      if (crlNumber !== undefined && state.fileNumber !== null && crlNumber <= state.fileNumber && !deps.fileSync?.reloadPending) return;
      enqueue(null, true);
    },
    idle: () => (running || pending ? new Promise<void>((resolve) => idleWaiters.push(resolve)) : Promise.resolve()),
    status: () => ({ ...state }),
    async stop() {
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      const dropped = pending;
      pending = null;
      for (const w of dropped?.waiters ?? []) w.reject(new Error('the CRL publisher was stopped'));
      await running;
    },
  };
}
