/**
 * Constructs the CRL pipeline (src/crl/publish-crl.ts) and its trigger (src/crl/crl-publisher.ts)
 * for one process; no policy lives here.
 *
 * `publish: true` (serve, worker): this process builds CRLs, keeps CRL_OUTPUT_PATH equal to the
 * latest one, reloads its broker and closes revoked sessions (BROKER_ADMIN_URL); on Postgres it
 * follows other processes' revocations and CRLs. `publish: false` (API replica on Postgres):
 * revocations are NOTIFYed to the workers; the routes serve the stored CRL. PGlite always publishes.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import type { RevocationListener } from '../app/ports.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { customerCrlRoutes } from '../http/routes/customer-crl.ts';
import { pkiRoutes } from '../http/routes/pki.ts';
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
import { createCrlBundleSource, type CrlBundleSource } from '../crl/crl-bundle.ts';
import { reconcileWithNewestCrl } from '../crl/reconcile-crl.ts';
import { createReconcileRevocations } from '../app/reconcile-revocations.ts';
import { silentLogger, type Logger } from '../support/logger.ts';

export type CrlConfig = Pick<Config, 'crlOutputPath' | 'crlRefreshMinutes' | 'crlValidityHours' | 'brokerPidFile' | 'brokerReloadCommand' | 'publicBaseUrl'> &
  Partial<Pick<Config, 'brokerAdmin' | 'crlReconcilePath'>>;

export interface CrlPublicationOptions {
  config: CrlConfig;
  storage: { db: Database; driver: Driver };
  /** The loaded Device CA; null: nothing is published and the CRL routes answer 503. */
  ca: DeviceCa | null;
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
  /** null when this process does not publish (API replica) or has no CA. */
  publisher: CrlPublisher | null;
  getCrl: GetCrl;
  /** The Device CA's key id (the crl_state row); null without a CA. */
  issuerKeyId: string | null;
  /** The CRL bundle broker agents apply (every CA's file variant); null without a CA. */
  bundle: CrlBundleSource | null;
  routes: { pki: FastifyPluginAsync; customer: FastifyPluginAsync };
  distributionPointUrl: string;
  /** What happens at the broker after a new CRL file (for the start banner); null when this process does not publish. */
  broker: { reload: string; reloadConfigured: boolean; sessionKicking: boolean } | null;
  /** Restores revocations the newest CRL found carries and the database lacks (start() does it first); no-op when this process does not publish. */
  reconcile(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createCrlPublication(options: CrlPublicationOptions): CrlPublication {
  const { config, ca, storage: { db, driver } } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const authority = ca ? crlAuthorityFor(ca) : null;
  const distributionPointUrl = crlDistributionPointUrl(config);
  const timings = crlRefreshTimings(config.crlRefreshMinutes);
  const storage = createStorage(db);
  const getCrl = createGetCrl({ storage, issuerKeyId: authority?.issuerKeyId ?? null });
  const instanceId = newInstanceId();
  let publisher: CrlPublisher | null = null;
  /**
   * The file variant this process just published, kept for the bundle: the waiting broker agents
   * are answered without reading the CRL back from the database (tens of MB at a million entries).
   * Used only when the version the bundle read from the database is this very CRL.
   */
  let published: { sha256: string; fileDer: Uint8Array } | null = null;
  let versionRead: string | null = null;
  const bundle = authority
    ? createCrlBundleSource({
        issuers: [
          {
            issuerKeyId: authority.issuerKeyId,
            readVersion: async () => {
              const info = await storage.asOperator(({ crl }) => crl.readCrlInfo(authority.issuerKeyId));
              versionRead = info?.sha256 ?? null;
              return info?.sha256 ? { sha256: info.sha256, crlNumber: info.crlNumber } : null;
            },
            loadFileDer: async () => (published && published.sha256 === versionRead ? published.fileDer : loadStoredFileCrl(storage, authority.issuerKeyId)),
          },
        ],
        onError: (error) => logger.warn({ err: (error as Error).message }, 'could not read the CRL bundle'),
      })
    : null;
  const events = createRevocationEvents({ db, local: { revocationCommitted: () => publisher?.revocationCommitted() }, notify: driver.kind === 'pg', instanceId, logger });

  let broker: CrlPublication['broker'] = null;
  /** Before the first publication: restore revocations an earlier CRL carried (a database restored from an older backup). */
  let reconcile: (() => Promise<unknown>) | null = null;
  const sessions = authority && ((options.publish ?? true) || driver.kind === 'pglite') ? revokedSessionsFor(config, logger) : null;
  if (authority && ((options.publish ?? true) || driver.kind === 'pglite')) {
    const reloader = localBrokerReloader(config, logger, options.reloader);
    broker = { reload: reloader.description, reloadConfigured: reloader.configured, sessionKicking: sessions !== null };
    const file = createCrlFileSync({ path: config.crlOutputPath, caPublicKey: authority.publicKey, issuerNameDer: authority.issuerNameDer, clock, reloader, logger, fs: options.fs });
    const settings = { validityHours: config.crlValidityHours, distributionPointUrl };
    const publish = createPublishCrl({ storage, clock, authority, settings, file });
    const reconcileRevocations = createReconcileRevocations({ storage, clock });
    reconcile = () =>
      reconcileWithNewestCrl({ authority, storage, reconcile: reconcileRevocations, file, filePath: config.crlOutputPath, operatorPath: config.crlReconcilePath ?? null, logger });
    publisher = createCrlPublisher({
      pipeline: createCrlPipeline({ publish, storage, authority, file, sessions, logger, sessionErrors: sessionStepErrors(options.metrics) }),
      clock,
      logger,
      metrics: options.metrics,
      staleAfterMs: timings.staleAfterMs,
      checkMs: (options.refreshTimer ?? true) ? timings.checkMs : null,
      // Another process's publication also wakes the broker agents waiting on the bundle.
      events: (handlers) =>
        listenForCrlEvents(driver, instanceId, { ...handlers, onPublished: (crlNumber) => (handlers.onPublished(crlNumber), bundle?.published()) }, logger),
      onPublished: (crl) => {
        published = { sha256: crl.sha256, fileDer: crl.fileDer };
        getCrl.offer(crl);
        events.crlPublished(crl.crlNumber);
        bundle?.published();
      },
    });
  }

  const routeOptions = { getCrl, crlMaxAgeSeconds: timings.maxAgeSeconds };
  return {
    listener: events,
    publisher,
    getCrl,
    issuerKeyId: authority?.issuerKeyId ?? null,
    bundle,
    distributionPointUrl,
    broker,
    routes: {
      pki: pkiRoutes({ caCertPem: ca?.certPem ?? null, caNotBefore: ca?.certificate.notBefore ?? null, ...routeOptions }),
      customer: customerCrlRoutes(getCrl, { maxAgeSeconds: timings.maxAgeSeconds }),
    },
    async reconcile() {
      await reconcile?.();
    },
    async start() {
      await reconcile?.(); // a bad CRL_RECONCILE_PATH throws: the process does not start, nothing is published
      await publisher?.start();
    },
    async stop() {
      bundle?.close();
      await publisher?.stop();
      await sessions?.close(); // no further kicks; the ones in flight finish
      await events.flush();
    },
  };
}
