/**
 * Constructs the CRL pipeline (src/crl/publish-crl.ts) and its trigger (src/crl/crl-publisher.ts)
 * for one process; no policy lives here.
 *
 * `publish: true` (serve, worker): this process builds CRLs, keeps CRL_OUTPUT_PATH equal to the
 * latest one, reloads its broker and closes revoked sessions (BROKER_ADMIN_URL); on Postgres it
 * follows other processes' revocations and CRLs. `publish: false` (API replica on Postgres):
 * revocations are NOTIFYed to the workers; the routes serve the stored CRL. PGlite always publishes.
 *
 * Several CAs (src/crl/ca-set.ts): one pipeline and one publisher per trusted CA (staged, active,
 * retiring), each with its own crl_state row and number series; the broker's crlfile and cafile
 * are kept by src/crl/broker-trust-files.ts (a CA's CRL in the crlfile before the CA enters the
 * cafile; out of the cafile before its CRL leaves). A revocation publishes the CRL of the CA that
 * has pending revocations only. /pki/crl and /pki/ca.pem serve the default CA.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import type { RevocationListener } from '../app/ports.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import type { Database } from '../storage/database.ts';
import type { Driver } from '../storage/driver.ts';
import { createStorage } from '../storage/repositories.ts';
import { createRevocationEvents, listenForCrlEvents, newInstanceId } from '../storage/repos/crl-repo.ts';
import type { BrokerReloader } from '../broker/broker-reloader.ts';
import { localBrokerReloader } from './local-broker-reloader.ts';
import { revokedSessionsFor } from '../broker/revoked-sessions.ts';
import { createCrlFileSync, type CrlFs } from '../crl/crl-file-sync.ts';
import { createCrlPublisher, createGetCrl, crlRefreshTimings, sessionStepErrors, type CrlPublisher, type GetCrl } from '../crl/crl-publisher.ts';
import { createCrlPipeline, createPublishCrl, crlAuthorityFor, crlDistributionPointUrl, loadStoredFileCrl } from '../crl/publish-crl.ts';
import { createCrlBundleSource, type CrlBundleIssuer, type CrlBundleSource } from '../crl/crl-bundle.ts';
import { caSourceOf, isTrusted, staticCaSource, type PublishedCa } from '../crl/ca-set.ts';
import type { CaDirectory } from '../pki/ca-directory.ts';
import { createBrokerTrustFiles, type BrokerTrustFiles } from '../crl/broker-trust-files.ts';
import type { CrlAuthority, PublishedCrl } from '../crl/publish-crl.ts';
import { reconcileWithNewestCrl } from '../crl/reconcile-crl.ts';
import { createReconcileRevocations } from '../app/reconcile-revocations.ts';
import { silentLogger, type Logger } from '../support/logger.ts';
import { crlHashDirFor } from '../broker/crl-hash-links.ts';
import { existsSync } from 'node:fs';

export type CrlConfig = Pick<Config, 'crlOutputPath' | 'crlRefreshMinutes' | 'crlValidityHours' | 'brokerPidFile' | 'brokerReloadCommand' | 'publicBaseUrl'> &
  Partial<Pick<Config, 'brokerAdmin' | 'crlReconcilePath' | 'crlFullRebuildMinutes' | 'brokerCaPath' | 'brokerGrantsPath' | 'brokerRabbitmq'>>;

export interface CrlPublicationOptions {
  config: CrlConfig;
  storage: { db: Database; driver: Driver };
  /** The loaded Device CA (one CA, active, global); null: nothing is published and the CRL routes answer 503. Ignored when `cas` is given. */
  ca: DeviceCa | null;
  /** The CAs to publish (the CA records); default: `ca` alone. */
  cas?: CaDirectory;
  /** Unused since CA records store each CA's distribution point (kept for callers that pass it). */
  legacyIssuerKeyId?: string | null;
  clock?: Clock;
  metrics?: Registry;
  logger?: Logger;
  /** This process publishes (serve, worker). Default true; PGlite always does. */
  publish?: boolean;
  /** Re-sign on a timer when the stored CRL gets older than CRL_REFRESH_MINUTES. Default true when publishing. */
  refreshTimer?: boolean;
  /** Test seams. */
  fs?: CrlFs;
  reloader?: BrokerReloader;
}

export interface CrlPublication {
  /** The use cases' RevocationListener: direct call to the local publisher, and/or NOTIFY (Postgres). */
  listener: RevocationListener;
  /** Every trusted CA's publisher behind one (the default CA's results); null when this process does not publish or has no CA. */
  publisher: CrlPublisher | null;
  /** The default CA's CRL (/pki/crl). */
  getCrl: GetCrl;
  /** The default CA's key id (the crl_state row); null without a CA. */
  issuerKeyId: string | null;
  /** Key ids of every trusted CA (staged, active, retiring): the CRLs brokers must have. */
  issuerKeyIds(): string[];
  /** One CA's publisher (tests, status); null when not published here. */
  publisherFor(issuerKeyId: string): CrlPublisher | null;
  /** The CRL of a CA by id (/pki/ca/{id}/crl); null for an unknown CA. */
  getCrlOf(caId: string): GetCrl | null;
  /** The CAs as published now. */
  cas(): PublishedCa[];
  /** The broker's crlfile + cafile keeper (null when this process does not publish). */
  trustFiles: BrokerTrustFiles | null;
  /** The CRL bundle broker agents apply (every CA's file variant); null without a CA. */
  bundle: CrlBundleSource | null;
  routes: { pki: FastifyPluginAsync; customer: FastifyPluginAsync };
  /** The default CA's distribution point URL. */
  distributionPointUrl: string;
  /** What happens at the broker after a new CRL file (for the start banner); null when this process does not publish. */
  broker: { reload: string; reloadConfigured: boolean; sessionKicking: boolean } | null;
  /** Restores revocations the newest CRL found carries and the database lacks (start() does it first); no-op when this process does not publish. */
  reconcile(): Promise<void>;
  /** Resolves when a CA set change has been applied (pipelines, broker files). */
  settled(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface PerCa {
  entry: PublishedCa;
  /** null: no key loaded (retired, revoked): its last CRL is served, no new one built. */
  authority: CrlAuthority | null;
  getCrl: GetCrl;
  /** Set while this CA is trusted and this process publishes. */
  publisher: CrlPublisher | null;
  /** Where its pipeline writes (CRL_OUTPUT_PATH, or its own file with several CAs). */
  path: string | null;
  reconcile: (() => Promise<unknown>) | null;
  started: boolean;
  /** The CRL this process published last, kept for the bundle (see bundleIssuer): its file variant is made only if an agent asks. */
  lastPublished?: { sha256: string; crl: Pick<PublishedCrl, 'fileDer'> } | null;
  versionRead?: string | null;
}

export function createCrlPublication(options: CrlPublicationOptions): CrlPublication {
  const { config, storage: { db, driver } } = options;
  const legacy = options.legacyIssuerKeyId !== undefined ? options.legacyIssuerKeyId : (options.ca?.subjectKeyId.toString('hex') ?? null);
  const source = options.cas ? caSourceOf(options.cas) : staticCaSource(options.ca, config);
  void legacy;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const timings = crlRefreshTimings(config.crlRefreshMinutes);
  const storage = createStorage(db);
  const instanceId = newInstanceId();
  const publishing = (options.publish ?? true) || driver.kind === 'pglite';
  const perCa = new Map<string, PerCa>(); // by CA id
  let running = false;
  let stopped = false;

  const trusted = () => [...perCa.values()].filter((p): p is PerCa & { authority: CrlAuthority } => isTrusted(p.entry) && p.authority !== null);
  const defaultEntry = () => {
    const d = source.defaultCa();
    return d ? (perCa.get(d.id) ?? null) : null;
  };
  const published = () => trusted().map((p) => p.publisher).filter((p): p is CrlPublisher => p !== null);

  const bundleIssuer = (p: PerCa & { authority: CrlAuthority }): CrlBundleIssuer => ({
    issuerKeyId: p.authority.issuerKeyId,
    readVersion: async () => {
      const info = await storage.asOperator(({ crl }) => crl.readCrlInfo(p.authority.issuerKeyId));
      p.versionRead = info?.sha256 ?? null;
      return info?.sha256 ? { sha256: info.sha256, crlNumber: info.crlNumber } : null;
    },
    // The file variant this process just published answers the waiting agents without reading it back
    // from the database (tens of MB at a million entries), when the version read is that very CRL.
    loadFileDer: async () =>
      p.lastPublished && p.lastPublished.sha256 === p.versionRead ? p.lastPublished.crl.fileDer : loadStoredFileCrl(storage, p.authority.issuerKeyId),
  });
  const bundle = source.list().length
    ? createCrlBundleSource({
        issuers: () => trusted().map(bundleIssuer),
        onError: (error) => logger.warn({ err: (error as Error).message }, 'could not read the CRL bundle'),
      })
    : null;

  const events = createRevocationEvents({ db, local: { revocationCommitted: () => composite?.revocationCommitted() }, notify: driver.kind === 'pg', instanceId, logger });

  let broker: CrlPublication['broker'] = null;
  const sessions = source.list().length && publishing ? revokedSessionsFor(config, logger) : null;
  const reloader = source.list().length && publishing ? localBrokerReloader(config, logger, options.reloader) : null;
  // Only the certfleet_acl plugin binds a certificate's CN to its CA's tenant: without it (acl_file mode, RabbitMQ) tenant CAs stay out of the cafile.
  const tenantCas = config.brokerGrantsPath && !config.brokerRabbitmq ? 'bind' : 'exclude';
  // Mosquitto's CRL hash folder (capath layout, the broker-config default since issue 22): kept when broker-config made it.
  const hashDir = crlHashDirFor(config.crlOutputPath);
  const trustFiles = reloader
    ? createBrokerTrustFiles({ crlPath: config.crlOutputPath, caPath: config.brokerCaPath ?? null, reloader, logger, tenantCas, hashDir: !config.brokerRabbitmq && existsSync(hashDir) ? hashDir : null })
    : null;
  if (reloader) broker = { reload: reloader.description, reloadConfigured: reloader.configured, sessionKicking: sessions !== null };
  const several = () => trusted().length > 1;

  /** One CA's pipeline and publisher (this process publishes and the CA is trusted). */
  function makePublisher(p: PerCa & { authority: CrlAuthority }) {
    if (!trustFiles || !reloader) return;
    const path = trustFiles.crlPathFor(p.authority.issuerKeyId);
    const { authority } = p;
    const file = createCrlFileSync({ path, caPublicKey: authority.publicKey, issuerNameDer: authority.issuerNameDer, clock, reloader: trustFiles.assembler, logger, fs: options.fs });
    const settings = { validityHours: config.crlValidityHours, distributionPointUrl: p.entry.distributionPointUrl, fullRebuildMs: (config.crlFullRebuildMinutes ?? 60) * 60_000 };
    const publish = createPublishCrl({ storage, clock, authority, settings, file });
    const reconcileRevocations = createReconcileRevocations({ storage, clock });
    p.path = path;
    p.reconcile = () => reconcileWithNewestCrl({ authority, storage, reconcile: reconcileRevocations, file, filePath: path, operatorPath: config.crlReconcilePath ?? null, logger });
    let self: CrlPublisher | null = null;
    self = createCrlPublisher({
      pipeline: createCrlPipeline({ publish, storage, authority, file, sessions, logger, sessionErrors: sessionStepErrors(options.metrics) }),
      clock,
      logger,
      // The unlabelled certfleet_crl_* metrics are the default CA's (one CA: that one); every CA's are in certfleet_ca_crl_* (ca-metrics.ts).
      metrics: trusted().length <= 1 || source.defaultCa()?.id === p.entry.id ? options.metrics : undefined,
      staleAfterMs: timings.staleAfterMs,
      checkMs: (options.refreshTimer ?? true) ? timings.checkMs : null,
      // Another process's publication also wakes the broker agents waiting on the bundle.
      events: (handlers) =>
        listenForCrlEvents(
          driver,
          instanceId,
          {
            ...handlers,
            // Several CAs: another process's revocation rebuilds only the CRL of a CA with pending revocations (or a stale one).
            onRevoked: (committedBefore) => (several() ? void self?.publishIfStale().catch(() => undefined) : handlers.onRevoked(committedBefore)),
            onPublished: (crlNumber) => (handlers.onPublished(crlNumber), bundle?.published()),
          },
          logger,
        ),
      onPublished: (crl) => {
        p.lastPublished = { sha256: crl.sha256, crl };
        p.getCrl.offer(crl);
        events.crlPublished(crl.crlNumber);
        bundle?.published();
      },
    });
    p.publisher = self;
  }

  function entryFor(e: PublishedCa): PerCa {
    const authority = e.ca ? crlAuthorityFor(e.ca) : null;
    return { entry: e, authority, getCrl: createGetCrl({ storage, issuerKeyId: e.issuerKeyId }), publisher: null, path: null, reconcile: null, started: false };
  }
  for (const e of source.list()) perCa.set(e.id, entryFor(e));
  // One CA (the usual case): its publisher exists from the start, as before CAs were records.
  if (trusted().length === 1) makePublisher(trusted()[0]!);
  const trustMembers = () => trusted().map((p) => ({ issuerKeyId: p.authority.issuerKeyId, certPem: p.entry.certPem, tenantId: p.entry.tenantId }));

  /** Applies the CA source's current list: stops what changed, sets the broker files in order, starts the new pipelines. */
  async function apply() {
    const next = source.list();
    // CAs no longer listed, or whose status changed: their publisher stops first (nothing writes the broker files behind our back).
    for (const [id, p] of perCa) {
      const e = next.find((n) => n.id === id);
      if (!e || e.status !== p.entry.status || (e.ca === null) !== (p.entry.ca === null)) {
        await p.publisher?.stop();
        p.publisher = null;
        p.started = false;
        if (!e) perCa.delete(id);
        else perCa.set(id, { ...entryFor(e), getCrl: p.getCrl });
      }
    }
    for (const e of next) if (!perCa.has(e.id)) perCa.set(e.id, entryFor(e));
    if (!trustFiles) {
      bundle?.published();
      return;
    }
    const members = trustMembers();
    // A pipeline writing the wrong file (one CA ↔ several) stops before the files change hands.
    const willBeSingle = members.length <= 1;
    for (const p of trusted()) {
      const want = willBeSingle ? config.crlOutputPath : null;
      if (p.publisher && (want === null ? p.path === config.crlOutputPath : p.path !== config.crlOutputPath)) {
        await p.publisher.stop();
        p.publisher = null;
        p.started = false;
      }
    }
    await trustFiles.setMembers(members);
    if (!running) return;
    for (const p of trusted()) {
      if (!p.publisher) makePublisher(p);
      if (p.publisher && !p.started) {
        p.started = true;
        await p.reconcile?.();
        await p.publisher.start();
      } else if (p.publisher) {
        // A CA change may leave a CRL to rebuild: an intermediate retired or revoked goes on its root's CRL (a pending mark).
        void p.publisher.publishIfStale().catch(() => undefined);
      }
    }
    bundle?.published();
  }

  let applying: Promise<void> = Promise.resolve();
  const reapply = () => {
    applying = applying.then(
      () => (stopped ? undefined : apply()),
      () => (stopped ? undefined : apply()),
    );
    applying.catch((error: Error) => logger.error({ err: error.message }, 'could not apply the CA set to the CRL publication'));
    return applying;
  };
  const unsubscribe = source.onChange(() => void reapply());

  // The one object the worker, the use cases and the tests hold: every CA's publisher behind it.
  const fanOut = async (each: (p: CrlPublisher) => Promise<CrlPublication_>) => {
    const list = published();
    const results = await Promise.all(list.map(each));
    const def = defaultEntry()?.publisher;
    const i = def ? list.indexOf(def) : -1;
    return results[i >= 0 ? i : 0]!;
  };
  const composite: CrlPublisher | null =
    publishing && source.list().length
      ? {
          revocationCommitted(hint) {
            const list = published();
            if (list.length === 1) list[0]!.revocationCommitted(hint);
            // Several CAs: only a CA with pending revocations (crl_pending_revocations) or a stale CRL builds.
            else for (const p of list) void p.publishIfStale().catch(() => undefined);
          },
          publishNow: () => fanOut((p) => p.publishNow()),
          publishIfStale: () => fanOut((p) => p.publishIfStale()),
          syncFile(crlNumber) {
            for (const p of published()) p.syncFile(crlNumber);
          },
          async idle() {
            await applying.catch(() => undefined);
            for (const p of published()) await p.idle();
            await trustFiles?.idle();
          },
          status() {
            const list = published();
            const def = defaultEntry()?.publisher ?? list[0];
            const base = def ? def.status() : { running: false, lastSuccessAt: null, lastError: null, consecutiveFailures: 0, crlNumber: null, nextUpdate: null, fileNumber: null, reloadPending: false, runs: 0, publications: 0 };
            const all = list.map((p) => p.status());
            return {
              ...base,
              running: all.some((s) => s.running),
              lastError: all.find((s) => s.lastError)?.lastError ?? null,
              consecutiveFailures: Math.max(0, ...all.map((s) => s.consecutiveFailures)),
              reloadPending: all.some((s) => s.reloadPending),
            };
          },
          start: async () => {
            running = true;
            await reapply();
          },
          stop: async () => {
            for (const p of published()) await p.stop();
          },
        }
      : null;
  type CrlPublication_ = Awaited<ReturnType<CrlPublisher['publishNow']>>;

  // The default CA's CRL, whichever CA that is now.
  const noCaGetCrl = createGetCrl({ storage, issuerKeyId: null });
  const getCrl: GetCrl = Object.assign(() => (defaultEntry()?.getCrl ?? noCaGetCrl)(), {
    offer: (crl: Parameters<GetCrl['offer']>[0]) => defaultEntry()?.getCrl.offer(crl),
  });
  const getCrlOf = (caId: string) => perCa.get(caId)?.getCrl ?? null;

  const routeOptions = { getCrl, crlMaxAgeSeconds: timings.maxAgeSeconds };
  const def0 = source.defaultCa();
  return {
    listener: events,
    publisher: composite,
    getCrl,
    get issuerKeyId() {
      return defaultEntry()?.entry.issuerKeyId ?? null;
    },
    issuerKeyIds: () => trusted().map((p) => p.authority.issuerKeyId),
    publisherFor: (id) => trusted().find((p) => p.authority.issuerKeyId === id)?.publisher ?? null,
    getCrlOf,
    cas: () => [...perCa.values()].map((p) => p.entry),
    trustFiles,
    bundle,
    get distributionPointUrl() {
      return defaultEntry()?.entry.distributionPointUrl ?? def0?.distributionPointUrl ?? crlDistributionPointUrl(config);
    },
    broker,
    // Imported when registered: a worker never serves them (and never loads the HTTP auth and its JOSE library).
    routes: {
      pki: async (app) =>
        (await import('../http/routes/pki.ts')).pkiRoutes({
          caCertPem: () => defaultEntry()?.entry.certPem ?? null,
          caNotBefore: () => defaultEntry()?.entry.notBefore ?? null,
          cas: () => [...perCa.values()].map((p) => ({ id: p.entry.id, status: p.entry.status, certPem: p.entry.certPem, notBefore: p.entry.notBefore, getCrl: p.getCrl })),
          ...routeOptions,
        })(app),
      customer: async (app) => (await import('../http/routes/customer-crl.ts')).customerCrlRoutes(getCrl, { maxAgeSeconds: timings.maxAgeSeconds })(app),
    },
    async reconcile() {
      if (!trustFiles) return;
      for (const p of trusted()) {
        if (!p.publisher) makePublisher(p);
        await p.reconcile?.();
      }
    },
    settled: () => applying.then(() => trustFiles?.idle()),
    async start() {
      running = true;
      await reapply(); // a bad CRL_RECONCILE_PATH throws: the process does not start, nothing is published
      await applying;
    },
    async stop() {
      stopped = true;
      unsubscribe();
      bundle?.close();
      await applying.catch(() => undefined);
      await composite?.stop();
      await sessions?.close(); // no further kicks; the ones in flight finish
      await events.flush();
    },
  };
}
