/**
 * When the CRL pipeline (publish-crl.ts) runs: coalesces revocations into publications, retries
 * failures with backoff, re-signs on a timer, and follows the other processes' CRL events.
 *
 * - `revocationCommitted()` starts a publication at once when idle; revocations that arrive
 *   while one runs mark it dirty, and exactly one more publication runs after it (with all
 *   of them, since it reads the database afresh).
 * - Revocations and the refresh merge into the entries the pipeline keeps in memory (incremental);
 *   `publishNow()` and a retry after a failure read every entry from the database.
 * - `publishNow()` always builds a new CRL; `publishIfStale()` (the refresh timer) only when the
 *   stored one is older than the refresh interval or its nextUpdate is near.
 * - `syncFile()` (another replica published) copies the stored CRL to this replica's file.
 * - `start()`: LISTEN for other processes' events (Postgres), publish once if stale, start the
 *   refresh timer; `stop()` undoes it.
 * And the served side: createGetCrl, the stored CRL for GET /pki/crl, cached, offered each new CRL.
 * Everything runs one at a time on one queue, so the file is never written twice at once.
 * A failure is logged, counted and retried with backoff; so is a broker reload failure.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../domain/clock.ts';
import type { StoredCrlInfo } from '../app/storage-ports.ts';
import type { CrlPipeline, CrlRun, PublishCondition, PublishedCrl } from './publish-crl.ts';
import type { CrlFileSyncResult } from './crl-file-sync.ts';
import { createBackoff } from '../support/backoff.ts';
import type { Logger } from '../support/logger.ts';
import { AppError } from '../domain/errors.ts';
import type { Storage } from '../app/storage-ports.ts';
import { crlDerToPemBytes } from './verify-crl.ts';

/** Other processes' CRL events (Postgres LISTEN, storage/revocation-events.ts); null when the driver cannot listen. */
export type CrlEventSource = (handlers: {
  /** A revocation committed in another process before this database time. */
  onRevoked(committedBefore: Date): void;
  /** Another process stored CRL `crlNumber`. */
  onPublished(crlNumber: bigint): void;
  /** (Re)connected, with the database clock: events before it may have been missed. */
  onConnected(databaseNow: Date): void;
}) => { close(): Promise<void> } | null;

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
/** The watchdog looks at most this often, and at least this rarely. */
const MIN_CHECK_MS = 5_000;
const MAX_CHECK_MS = 5 * 60_000;
/** How long start() waits for the first LISTEN connection before publishing anyway. */
const LISTEN_WAIT_MS = 5_000;
/** HTTP caches may keep a CRL at most this long (s). */
const MAX_CACHE_SECONDS = 300;

/**
 * From CRL_REFRESH_MINUTES: how often the watchdog looks; the age at which a CRL is re-signed
 * (so none gets older than the refresh interval); how long HTTP caches may keep one (well below
 * the refresh interval: revocations should show within minutes).
 */
export function crlRefreshTimings(refreshMinutes: number) {
  const refreshMs = refreshMinutes * 60_000;
  const checkMs = clamp(Math.floor(refreshMs / 6), MIN_CHECK_MS, MAX_CHECK_MS);
  return { checkMs, staleAfterMs: Math.max(checkMs, refreshMs - checkMs), maxAgeSeconds: clamp(Math.floor(refreshMs / 2000), 1, MAX_CACHE_SECONDS) };
}

export interface CrlPublisherDeps {
  pipeline: CrlPipeline;
  clock: Clock;
  logger: Logger;
  metrics?: Registry;
  /** publishIfStale builds when the stored CRL is this old (about CRL_REFRESH_MINUTES), or its nextUpdate is this close. */
  staleAfterMs: number;
  /** The refresh timer's period (null: no timer). */
  checkMs?: number | null;
  /** Other processes' events (null: none, e.g. PGlite, always one process). */
  events?: CrlEventSource | null;
  /** Told after every new CRL was stored (e.g. NOTIFY the other replicas, refresh the HTTP cache). */
  onPublished?(crl: PublishedCrl): void;
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
  /** What the session step was given (null: not worked out). */
  newlyRevoked: CrlRun['newlyRevoked'];
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
  /** Builds and publishes a new CRL from every entry in the database (after the running one, if any). */
  publishNow(): Promise<CrlPublication>;
  /** Builds only when the stored CRL is missing, older than the refresh interval, or expired; syncs the file either way. */
  publishIfStale(): Promise<CrlPublication>;
  /** Makes the file match the stored CRL (another replica published `crlNumber`). */
  syncFile(crlNumber?: bigint): void;
  /** Resolves when nothing runs and nothing is queued (and the session step is done). */
  idle(): Promise<void>;
  status(): CrlPublisherStatus;
  /** LISTEN for other processes, publish once if stale, start the refresh timer. */
  start(): Promise<void>;
  /** Stops timers and LISTEN, drops queued work, waits for the running publication. */
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
  /** Read every entry from the database (publishNow, a retry) instead of merging into the entries kept in memory. */
  full: boolean;
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

/** Failures of the session step's own work (reading the broker file at start, looking up CNs, kicking). */
export function sessionStepErrors(registry: Registry | undefined): Counter<'stage'> {
  return metric(registry, 'certfleet_broker_session_step_errors_total', (registers) =>
    new Counter({ name: 'certfleet_broker_session_step_errors_total', help: 'Failures of the step that closes revoked sessions, by stage (baseline, lookup, kick)', labelNames: ['stage'], registers }),
  ) as Counter<'stage'>;
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

  function enqueue(publish: Condition, sync: boolean, waiter?: Waiter, full = false) {
    if (stopped) {
      waiter?.reject(new Error('the CRL publisher is stopped'));
      return;
    }
    if (pending) {
      pending.publish = merge(pending.publish, publish);
      pending.sync ||= sync;
      pending.full ||= full;
      if (waiter) pending.waiters.push(waiter);
    } else {
      pending = { publish, sync, full, waiters: waiter ? [waiter] : [] };
    }
    if (!running) running = drain();
  }

  const request = (publish: Condition, sync: boolean, full = false) =>
    new Promise<CrlPublication>((resolve, reject) => enqueue(publish, sync, { resolve, reject }, full));

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
    // onPublished as soon as the CRL is committed: agents and other replicas do not wait for the local broker's reload.
    let told = false;
    const onStored = (crl: PublishedCrl) => {
      told = true;
      deps.onPublished?.(crl);
    };
    const run: CrlRun =
      req.publish !== null ? await deps.pipeline.publish({ unless: req.publish === 'always' ? undefined : req.publish, incremental: !req.full, onStored }) : await deps.pipeline.sync();
    if (run.crl && !told) deps.onPublished?.(run.crl);
    const stored: StoredCrlInfo | null = run.stored;
    const file: CrlFileSyncResult | null = run.file;
    const ms = performance.now() - started;

    const published = run.published;
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
      state.reloadPending = file.reloaded === false;
      if (file.reloaded === false) {
        metrics.reloadFailures.inc();
        scheduleRetry({ publish: null, sync: true }, reloadBackoff.next());
      } else if (file.reloaded === true) {
        reloadBackoff.reset();
      }
    }
    if (req.publish !== null) metrics.runs.inc({ result: published ? 'published' : 'unchanged' });
    if (run.crl) {
      state.publications++;
      metrics.duration.observe(ms / 1000);
      const { crl } = run;
      deps.logger.info(
        {
          event: 'crl_published',
          crl_number: crl.crlNumber.toString(),
          entries: crl.entries,
          bytes: crl.der.length,
          ms: Math.round(ms),
          to_file_ms: run.toFileMs === null ? null : Math.round(run.toFileMs),
          entries_ms: Math.round(crl.timings.entriesMs),
          sign_ms: Math.round(crl.timings.signMs),
          lint_ms: Math.round(crl.timings.lintMs),
          verify_ms: Math.round(crl.timings.verifyMs),
          store_ms: Math.round(crl.timings.storeMs),
          file_ms: file?.writeMs !== undefined ? Math.round(file.writeMs) : null,
          ...(file?.steps
            ? { file_pem_ms: Math.round(file.steps.pemMs), file_data_ms: Math.round(file.steps.dataMs), file_verified_ms: Math.round(file.steps.verifiedMs), file_renamed_ms: Math.round(file.steps.renamedMs) }
            : {}),
          file: file?.file ?? null,
          this_update: crl.thisUpdate.toISOString(),
          next_update: crl.nextUpdate.toISOString(),
          broker_reloaded: file?.reloaded ?? null,
          newly_revoked: run.newlyRevoked?.serials.length ?? null,
          build_mode: crl.build.mode,
          ...(crl.build.fileMergeFallback ? { file_merge_fallback: true } : {}),
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
      bytes: run.crl ? run.crl.der.length : (stored?.bytes ?? null),
      nextUpdate: stored?.nextUpdate ?? null,
      ms,
      toFileMs: run.toFileMs,
      file,
      newlyRevoked: run.newlyRevoked,
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
      if (r) enqueue(r.publish, r.sync, undefined, true); // after a failure: from the database
    }, delay);
    retryTimer.unref();
  }

  let listening: { close(): Promise<void> } | null = null;
  let refreshTimer: NodeJS.Timeout | null = null;
  const publisher: CrlPublisher = {
    revocationCommitted(hint) {
      enqueue(hint?.committedBefore ? { builtAfter: hint.committedBefore } : 'always', true);
    },
    publishNow: () => request('always', true, true),
    publishIfStale: () => request({ youngerThanMs: deps.staleAfterMs }, true),
    syncFile(crlNumber) {
      if (crlNumber !== undefined && state.fileNumber !== null && crlNumber <= state.fileNumber && !state.reloadPending) return;
      enqueue(null, true);
    },
    async idle() {
      if (running || pending) await new Promise<void>((resolve) => idleWaiters.push(resolve));
      await deps.pipeline.idle();
    },
    status: () => ({ ...state }),
    async start() {
      await deps.pipeline.start();
      let connected: () => void = () => undefined;
      const firstConnection = new Promise<void>((resolve) => (connected = resolve));
      listening =
        deps.events?.({
          onRevoked: (committedBefore) => enqueue({ builtAfter: committedBefore }, true),
          onPublished: (crlNumber) => publisher.syncFile(crlNumber),
          // Revocations committed while we were not listening (down, reconnecting): rebuild unless a CRL was built since.
          onConnected: (now) => {
            enqueue({ builtAfter: now }, true);
            connected();
          },
        }) ?? null;
      if (listening) await Promise.race([firstConnection, new Promise((r) => setTimeout(r, LISTEN_WAIT_MS).unref())]);
      // No CRL yet, an old one, nextUpdate near, or revocations committed after the stored CRL's read (the
      // process died before publishing them; PGlite has no LISTEN to catch up with): publish now, once.
      await publisher.publishIfStale().catch(() => undefined); // logged; retried with backoff
      if (deps.checkMs) {
        refreshTimer = setInterval(() => void publisher.publishIfStale().catch(() => undefined), deps.checkMs);
        refreshTimer.unref();
      }
    },
    async stop() {
      stopped = true;
      if (refreshTimer) clearInterval(refreshTimer);
      refreshTimer = null;
      await listening?.close();
      listening = null;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      const dropped = pending;
      pending = null;
      for (const w of dropped?.waiters ?? []) w.reject(new Error('the CRL publisher was stopped'));
      await running;
    },
  };
  return publisher;
}

// ---------------------------------------------------------------------------------------------
// The served CRL (GET /pki/crl, /pki/crl.pem, /customer/crl)
// ---------------------------------------------------------------------------------------------

/** The latest stored CRL as served over HTTP. */
export interface CrlDocument {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Hex SHA-256 of the DER: the ETag. */
  sha256: string;
  der: Buffer;
  /** PEM labelled `X509 CRL`. */
  pem: Buffer;
}

export interface GetCrl {
  /** The latest stored CRL; a GET never signs one. Throws CRL_NOT_AVAILABLE before the first publication. */
  (): Promise<CrlDocument>;
  /** Hands a CRL this process just stored to the cache (saves reading tens of MB back). */
  offer(crl: { crlNumber: bigint; thisUpdate: Date; nextUpdate: Date; sha256: string; der: Buffer }): void;
}

/**
 * Serves the stored CRL with a cache keyed by its SHA-256: each call reads only the small
 * metadata row (so every replica sees a new CRL at once) and the DER only when it changed;
 * concurrent misses share one read.
 */
export function createGetCrl({ storage, issuerKeyId }: { storage: Storage; issuerKeyId: string | null }): GetCrl {
  let cached: CrlDocument | null = null;
  let loading: Promise<CrlDocument | null> | null = null;

  // The PEM is made on first use (a publisher offering its CRL should not wait for it).
  const toDocument = (crl: { crlNumber: bigint; thisUpdate: Date; nextUpdate: Date; sha256: string; der: Buffer }): CrlDocument => {
    let pem: Buffer | null = null;
    return {
      crlNumber: crl.crlNumber,
      thisUpdate: crl.thisUpdate,
      nextUpdate: crl.nextUpdate,
      sha256: crl.sha256,
      der: crl.der,
      get pem() {
        pem ??= crlDerToPemBytes(crl.der);
        return pem;
      },
    };
  };

  const load = async (): Promise<CrlDocument | null> => {
    const stored = await storage.asOperator(({ crl }) => crl.readCrl(issuerKeyId!));
    if (!stored) return null;
    const { info, der } = stored;
    if (!info.sha256 || !info.thisUpdate || !info.nextUpdate) return null;
    cached = toDocument({ crlNumber: info.crlNumber, thisUpdate: info.thisUpdate, nextUpdate: info.nextUpdate, sha256: info.sha256, der });
    return cached;
  };

  const getCrl = async (): Promise<CrlDocument> => {
    if (issuerKeyId === null) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
    const info = await storage.asOperator(({ crl }) => crl.readCrlInfo(issuerKeyId));
    if (!info || !info.sha256) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
    if (cached && cached.sha256 === info.sha256) return cached;
    loading ??= load().finally(() => {
      loading = null;
    });
    const doc = await loading;
    if (!doc) throw new AppError('CRL_NOT_AVAILABLE', 'no CRL has been published yet; try again shortly');
    return doc;
  };
  // The database stays the truth: every call compares the stored SHA-256 with the cached one.
  getCrl.offer = (crl: Parameters<GetCrl['offer']>[0]) => {
    cached = toDocument(crl);
  };
  return getCrl;
}
