/**
 * CRL publication, wired: the one factory the wiring roots call (createService for serve/api
 * and the tests; the worker's root).
 *
 *   const crl = createCrlPublication({ config, storage, ca: loaded.ca, clock, metrics, logger, publish: true });
 *   deps.revocations = crl.listener;   // the use cases call it after every committed revocation
 *   routes: crl.routes.pki (public /pki/ca.pem, /pki/crl, /pki/crl.pem), crl.routes.customer (GET /crl)
 *   await crl.start();                 // publishing process: LISTEN, first publication if needed, refresh timer
 *   await crl.publisher?.publishNow(); // the periodic refresh (the worker's task may call it every CRL_REFRESH_MINUTES)
 *   crl.publisher?.status();           // for health, alerts (CRL_STALE): failures, nextUpdate, file number
 *   await crl.stop();                  // before closing storage
 *
 * `publish: true` (serve, worker): this process builds CRLs into crl_state, keeps CRL_OUTPUT_PATH
 * equal to the latest one and reloads its broker (BROKER_PID_FILE / BROKER_RELOAD_COMMAND).
 * With Postgres it LISTENs for revocations of other processes and for CRLs other workers
 * stored (each worker keeps its own broker's file). `publish: false` (API replica on
 * Postgres): revocations are NOTIFYed to the workers; the routes serve the stored CRL.
 * PGlite is always one process, so it always publishes, in-process.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import type { RevocationListener } from '../app/ports.ts';
import { createGetCrl, type GetCrl } from '../app/get-crl.ts';
import { createPublishCrl } from '../app/publish-crl.ts';
import { crlAuthorityFor, crlDistributionPointUrl } from '../crl/crl-authority.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { customerCrlRoutes } from '../http/routes/customer-crl.ts';
import { pkiRoutes } from '../http/routes/pki.ts';
import type { Database } from '../storage/database.ts';
import type { Driver, Listening } from '../storage/driver.ts';
import { readCrlInfo } from '../storage/repos/crl-repo.ts';
import { storedFileCrlLoader } from '../crl/stored-file-crl.ts';
import { createStorage } from '../storage/repositories.ts';
import { createRevocationEvents, listenForCrlEvents, newInstanceId } from '../storage/revocation-events.ts';
import { createBrokerReloader, type BrokerReloader } from '../broker/broker-reloader.ts';
import { revokedSessionsFor, withSessionKicks, type SessionKickingReloader } from '../broker/session-kicking-reloader.ts';
import { createCrlFileSync, type CrlFs } from '../crl/crl-file-sync.ts';
import { createCrlPublisher, type CrlPublisher } from '../crl/crl-publisher.ts';
import { createCrlBundleSource, type CrlBundleSource } from '../crl/crl-bundle.ts';
import { silentLogger, type Logger } from '../support/logger.ts';

export type CrlConfig = Pick<
  Config,
  'crlOutputPath' | 'crlRefreshMinutes' | 'crlValidityHours' | 'brokerPidFile' | 'brokerReloadCommand' | 'publicBaseUrl'
> &
  Partial<Pick<Config, 'brokerAdmin'>>;

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
  /** The latest stored CRL (cached), for other entry points. */
  getCrl: GetCrl;
  /** The Device CA's key id (the crl_state row); null without a CA. */
  issuerKeyId: string | null;
  /** The CRL bundle broker agents apply (every CA's file variant); null without a CA. */
  bundle: CrlBundleSource | null;
  routes: { pki: FastifyPluginAsync; customer: FastifyPluginAsync };
  /** The CRL Distribution Point URL certificates carry, and the Issuing Distribution Point of the CRL served there. */
  distributionPointUrl: string;
  /** What happens at the broker after a new CRL file (for the start banner); null when this process does not publish. */
  broker: { reload: string; reloadConfigured: boolean; sessionKicking: boolean } | null;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export function createCrlPublication(options: CrlPublicationOptions): CrlPublication {
  const { config, storage, ca } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const { db, driver } = storage;
  const authority = ca ? crlAuthorityFor(ca) : null;
  const distributionPointUrl = crlDistributionPointUrl(config);
  const refreshMs = config.crlRefreshMinutes * 60_000;
  // The watchdog looks this often; a CRL is re-signed once it is (refresh - check) old, so none gets older than the refresh interval.
  const checkMs = clamp(Math.floor(refreshMs / 6), 5_000, 5 * 60_000);
  const staleAfterMs = Math.max(checkMs, refreshMs - checkMs);
  // HTTP caches may keep a CRL this long: well below the refresh interval; revocations should show within minutes.
  const maxAgeSeconds = clamp(Math.floor(refreshMs / 2000), 1, 300);
  const publishing = authority !== null && ((options.publish ?? true) || driver.kind === 'pglite');
  const instanceId = newInstanceId();

  const repositories = createStorage(db);
  const getCrl = createGetCrl({ storage: repositories, issuerKeyId: authority?.issuerKeyId ?? null });
  let publisher: CrlPublisher | null = null;
  const bundle = authority
    ? createCrlBundleSource({
        issuers: [
          {
            issuerKeyId: authority.issuerKeyId,
            readVersion: async () => {
              const info = await db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId));
              return info?.sha256 ? { sha256: info.sha256, crlNumber: info.crlNumber } : null;
            },
            loadFileDer: storedFileCrlLoader(db, authority.issuerKeyId),
          },
        ],
        onError: (error) => logger.warn({ err: (error as Error).message }, 'could not read the CRL bundle'),
      })
    : null;
  const events = createRevocationEvents({
    db,
    local: { revocationCommitted: () => publisher?.revocationCommitted() },
    notify: driver.kind === 'pg',
    instanceId,
    logger,
  });

  // BROKER_ADMIN_URL: after each successful reload, close the live sessions of newly revoked certificates.
  const sessions = publishing ? revokedSessionsFor(config, logger) : null;
  let kicking: SessionKickingReloader | null = null;
  let fileSync: ReturnType<typeof createCrlFileSync> | null = null;
  let broker: CrlPublication['broker'] = null;
  if (publishing && authority && ca) {
    const baseReloader =
      options.reloader ??
      createBrokerReloader({ pidFile: config.brokerPidFile ?? undefined, command: config.brokerReloadCommand ?? undefined, log: logger });
    kicking = sessions ? withSessionKicks(baseReloader, { crlPath: config.crlOutputPath, db, sessions, log: logger }) : null;
    const reloader = kicking ?? baseReloader;
    broker = { reload: baseReloader.description, reloadConfigured: baseReloader.configured, sessionKicking: kicking !== null };
    fileSync = createCrlFileSync({
      path: config.crlOutputPath,
      caPublicKey: authority.publicKey,
      issuerNameDer: authority.issuerNameDer,
      clock,
      reloader,
      logger,
      fs: options.fs,
    });
    publisher = createCrlPublisher({
      publish: createPublishCrl({ storage: repositories, clock, authority, settings: { validityHours: config.crlValidityHours, distributionPointUrl } }),
      readStored: () => db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId)),
      loadStoredDer: storedFileCrlLoader(db, authority.issuerKeyId),
      fileSync,
      clock,
      logger,
      metrics: options.metrics,
      staleAfterMs,
      onPublished: ({ crl }) => {
        getCrl.offer(crl);
        events.crlPublished(crl.crlNumber);
        bundle?.published();
      },
    });
  }

  let listening: Listening | null = null;
  let timer: NodeJS.Timeout | null = null;
  const pub = publisher;

  return {
    listener: events,
    publisher,
    getCrl,
    issuerKeyId: authority?.issuerKeyId ?? null,
    bundle,
    distributionPointUrl,
    broker,
    routes: {
      pki: pkiRoutes({ caCertPem: ca?.certPem ?? null, caNotBefore: ca?.certificate.notBefore ?? null, getCrl, crlMaxAgeSeconds: maxAgeSeconds }),
      customer: customerCrlRoutes(getCrl, { maxAgeSeconds }),
    },
    async start() {
      if (!pub) return;
      // A kill between writing a temp file and renaming it leaves the temp file behind.
      await fileSync?.removeStaleTempFiles().catch((error: Error) => logger.warn({ err: error.message }, 'could not remove temp CRL files'));
      let connected: () => void = () => undefined;
      const firstConnection = new Promise<void>((resolve) => (connected = resolve));
      listening = listenForCrlEvents(
        driver,
        instanceId,
        {
          onRevoked: (committedBefore) => pub.revocationCommitted({ committedBefore }),
          onPublished: (crlNumber) => {
            pub.syncFile(crlNumber);
            bundle?.published();
          },
          // Revocations committed while we were not listening (down, reconnecting): rebuild unless a CRL was built since.
          onConnected: (now) => {
            pub.revocationCommitted({ committedBefore: now });
            connected();
          },
        },
        logger,
      );
      if (listening) await Promise.race([firstConnection, new Promise((r) => setTimeout(r, 5_000).unref())]);
      // No CRL yet, an old one, nextUpdate near, or revocations committed after the stored CRL's read (the
      // process died before publishing them; PGlite has no LISTEN to catch up with): publish now, once.
      await pub.publishIfStale().catch(() => undefined); // logged; retried with backoff
      if (options.refreshTimer ?? true) {
        timer = setInterval(() => void pub.publishIfStale().catch(() => undefined), checkMs);
        timer.unref();
      }
    },
    async stop() {
      bundle?.close();
      if (timer) clearInterval(timer);
      timer = null;
      await listening?.close();
      listening = null;
      await publisher?.stop();
      await sessions?.close(); // no further kicks; the ones in flight finish
      await kicking?.idle(); // and so do their database look-ups, before storage closes
      await events.flush();
    },
  };
}
