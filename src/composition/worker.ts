import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { DAY_MS, MINUTE_MS, SECOND_MS, systemClock, type Clock } from '../domain/clock.ts';
import { createExpiryPolicy } from '../domain/expiry-policy.ts';
import { DEFAULT_RETRY_POLICY } from '../domain/notification-policy.ts';
import { createApplyScheduledRevocations } from '../app/apply-scheduled-revocations.ts';
import { createCheckCrlFreshness, type CrlHealth } from '../app/check-crl-freshness.ts';
import { createCheckSystemAlerts, type SystemHealth } from '../app/check-system-alerts.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { createBrokerFleet, type BrokerFleet } from '../app/broker-nodes.ts';
import { createDeliverNotifications, DEFAULT_DELIVERY_SETTINGS, type DeliverySettings, type WebhookSender } from '../app/deliver-notifications.ts';
import { createMarkExpired } from '../app/mark-expired.ts';
import { createBackfillCrlEntries } from '../app/backfill-crl-entries.ts';
import { createRaiseExpiryAlerts } from '../app/raise-expiry-alerts.ts';
import { createPublishRenewalAdvice, type RenewalAdvicePublisher } from '../app/publish-renewal-advice.ts';
import { readBrokerAdmin } from '../broker/admin-credentials.ts';
import { createMqttAdvicePublisher } from '../renewal/advice-publisher.ts';
import { noRevocationListener, type RevocationListener } from '../app/ports.ts';
import type { Leases } from '../scheduler/leases.ts';
import { createLeases } from '../storage/worker-leases.ts';
import { createStorage } from '../storage/repositories.ts';
import { createScheduler, workerMetrics, type Scheduler, type Timers, type WorkerTask } from '../scheduler/scheduler.ts';
import { createHttpWebhookSender } from '../webhooks/webhook-sender.ts';
import { createCrlPublication, type CrlPublication } from './crl.ts';
import { createBrokerAclPublication, type BrokerAclPublication } from './broker-acl.ts';
import { openCaDirectory, type StoredCaDirectory } from './ca-directory.ts';
import { watchedCas } from '../app/check-system-alerts.ts';
import type { CaDirectory } from '../pki/ca-directory.ts';
import { loadWebhookSecrets } from './webhook-secrets.ts';
import type { SecretSealer } from '../pki/secret-box.ts';
import { openStorage, type Storage } from './open-storage.ts';
import { createLogger, type Logger } from '../support/logger.ts';

/** What the worker needs of the CRL publisher (src/crl/crl-publisher.ts); the publisher itself fits. */
export interface CrlPublisherPort {
  /** Builds, verifies, stores and writes a new CRL now; rejects when that failed. */
  publishNow(): Promise<unknown>;
  /** Publications that failed in a row in this process (on-demand ones included). */
  status?(): { consecutiveFailures: number; reloadPending?: boolean };
  /** A revocation committed: publish soon (the scheduled-revocations task tells it). */
  revocationCommitted?(): void;
}

export const TASK_NAMES = ['scheduled-revocations', 'crl', 'mark-expired', 'renewal-advice', 'expiry-alerts', 'crl-freshness', 'broker-nodes', 'notifications', 'crl-entry-backfill'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export interface WorkerOverrides {
  clock?: Clock;
  /** Where renewal advice goes; default: the broker (MQTT_RENEWAL with BROKER_ADMIN_*), else nowhere (schedules only). */
  advicePublisher?: RenewalAdvicePublisher | null;
  storage?: Storage;
  /** Where the task metrics go (the service's registry under `serve`). */
  metrics?: Registry;
  /** The process logger (serve shares its own); default: a pino logger at LOG_LEVEL on stdout. */
  logger?: Logger;
  /**
   * The CRL publisher of this process (`serve` passes the service's). Absent: the worker
   * loads the Device CA and builds its own publication (standalone `certfleet worker`);
   * null, or no Device CA: no CRL tasks.
   */
  crl?: CrlPublisherPort | null;
  /** The Device CA `serve` loaded (for CA_EXPIRING); standalone, the worker's own. */
  ca?: DeviceCa | null;
  /** Told when scheduled revocations revoked something. Default: the CRL publication's listener (also NOTIFYs other replicas). */
  revocations?: RevocationListener;
  sender?: WebhookSender;
  /** The broker fleet whose lag the `broker-nodes` task checks (serve passes the service's); default: built here when a CA is loaded. */
  brokerFleet?: BrokerFleet | null;
  /** Decrypts the stored webhook secrets. Default: WEBHOOK_SECRET_KEY or the data dir's key file. */
  secrets?: SecretSealer;
  holder?: string;
  timers?: Timers;
  pollMs?: number;
  intervals?: Partial<Record<TaskName, number>>;
  delivery?: Partial<DeliverySettings>;
}

export interface Worker {
  scheduler: Scheduler;
  /** The CRL publication the worker built itself (standalone), or null. */
  crlPublication: CrlPublication | null;
  leases: Leases;
  holder: string;
  tasks: WorkerTask[];
  runOnce: Scheduler['runOnce'];
  /** Starts the loop (and the worker's own CRL publication: LISTEN for revocations, refresh watchdog). */
  start(): Promise<void>;
  /** Stops the loop, waits for running tasks, stops what it started, closes storage it opened. */
  close(): Promise<void>;
}

export const defaultIntervals = (config: Pick<Config, 'crlRefreshMinutes'>): Record<TaskName, number> => ({
  'scheduled-revocations': MINUTE_MS,
  crl: config.crlRefreshMinutes * MINUTE_MS,
  'mark-expired': MINUTE_MS,
  'renewal-advice': MINUTE_MS,
  'expiry-alerts': 10 * MINUTE_MS,
  'crl-freshness': 5 * MINUTE_MS,
  'broker-nodes': 30 * SECOND_MS,
  notifications: 10 * SECOND_MS,
  // Finds nothing once done (migration 036's index is then empty but for rows the SQL encoder declines).
  'crl-entry-backfill': 10 * MINUTE_MS,
});

/** CRL_STALE is raised this long before the published CRL's nextUpdate... */
const CRL_STALE_MARGIN_MS = DAY_MS;
/** ...or after this many failed publications in a row. */
const CRL_FAILURES_BEFORE_ALERT = 3;

/** The published CRL's nextUpdate (crl_state) and the failures of the CRL task (its lease row) and the publisher. */
function crlHealth(crl: CrlPublisherPort | null): CrlHealth {
  return {
    nextUpdate: (repos) => repos.crl.latestCrlNextUpdate(),
    async consecutiveFailures(repos) {
      return Math.max(await repos.tasks.consecutiveFailuresOf('crl'), crl?.status?.().consecutiveFailures ?? 0);
    },
  };
}

/** What the system alerts check: the broker this host reloads (the publisher's status) and the Device CA. */
function systemHealth(crl: CrlPublisherPort | null, ca: DeviceCa | null, directory: CaDirectory | null): SystemHealth {
  return {
    node: hostname(),
    brokerReloadPending: () => {
      const pending = crl?.status?.().reloadPending;
      return pending === undefined ? null : pending;
    },
    cas: () => {
      // Every CA record that is not retired or revoked; without records, the CA this process signs with.
      if (directory && directory.all().length > 0) return watchedCas(directory.all());
      return ca ? [{ id: ca.subjectKeyId.toString('hex'), subject: ca.certificate.subject, notAfter: ca.certificate.notAfter, tenantId: null, status: 'active' as const, successorStaged: false }] : null;
    },
  };
}

/**
 * The wiring root of the background worker (`certfleet worker`, and `serve` in-process):
 * the periodic tasks, in the order `--once` runs them, on a lease-coordinated scheduler.
 */
export async function createWorker(config: Config, overrides: WorkerOverrides = {}): Promise<Worker> {
  const clock = overrides.clock ?? systemClock;
  const storage = overrides.storage ?? (await openStorage(config));
  const { db } = storage;
  const intervals = { ...defaultIntervals(config), ...overrides.intervals };
  const log = overrides.logger ?? createLogger({ level: config.logLevel });
  let secrets = overrides.secrets;
  if (!secrets) {
    try {
      const loaded = await loadWebhookSecrets(config);
      if (loaded.warning) log.warn({}, loaded.warning);
      secrets = loaded.box;
    } catch (e) {
      if (!overrides.storage) await storage.close();
      throw e;
    }
  }
  let crlPublication: CrlPublication | null = null;
  /** The CA records and their keys (a token's sessions are closed with the worker). */
  let directory: StoredCaDirectory | null = null;
  let deviceCa: DeviceCa | null = overrides.ca ?? null;
  if (overrides.crl === undefined) {
    try {
      directory = await openCaDirectory({ config, storage: createStorage(db), db, driver: storage.driver, clock, logger: log });
      const defaultCa = directory.defaultCa()?.ca ?? null;
      deviceCa ??= defaultCa;
      if (defaultCa) {
        crlPublication = createCrlPublication({
          config,
          storage,
          ca: defaultCa,
          clock,
          metrics: overrides.metrics,
          logger: log,
          publish: true,
        });
      } else {
        log.warn({}, `no CRL tasks: ${directory.configured.problem ?? 'no active global Device CA'}`);
      }
    } catch (e) {
      await directory?.close();
      if (!overrides.storage) await storage.close();
      throw e;
    }
  }
  // A standalone worker keeps its broker's acl_file too (in `serve` the service does).
  const brokerAcl: BrokerAclPublication | null = overrides.crl === undefined ? createBrokerAclPublication({ config, storage, logger: log, publish: true }) : null;
  const crl: CrlPublisherPort | null = overrides.crl === undefined ? (crlPublication?.publisher ?? null) : overrides.crl;
  const warningDays = config.certExpiryWarningDays;
  const highDays = Math.min(config.certExpiryHighDays, warningDays);
  const policy = createExpiryPolicy({ warningDays, highDays, criticalDays: Math.min(config.certExpiryCriticalDays, highDays) });
  const revocations =
    overrides.revocations ?? crlPublication?.listener ?? (crl?.revocationCommitted ? { revocationCommitted: () => crl.revocationCommitted!() } : noRevocationListener);

  const repositories = createStorage(db);
  const applyScheduledRevocations = createApplyScheduledRevocations({ storage: repositories, clock, revocations });
  const markExpired = createMarkExpired({ storage: repositories, clock });
  const backfillCrlEntries = createBackfillCrlEntries({ storage: repositories });
  const raiseExpiryAlerts = createRaiseExpiryAlerts({ storage: repositories, clock, policy });
  // Renewal advice goes to the broker when MQTT renewal is configured (certfleet's broker identity).
  const brokerAdmin = config.brokerAdmin;
  const mqttAdvice = overrides.advicePublisher === undefined && config.mqttRenewal && brokerAdmin ? createMqttAdvicePublisher(() => readBrokerAdmin(brokerAdmin)) : null;
  const publishRenewalAdvice = createPublishRenewalAdvice({ storage: repositories, clock, publisher: overrides.advicePublisher ?? mqttAdvice });
    const checkCrlFreshness = createCheckCrlFreshness({ storage: repositories, clock, health: crlHealth(crl), marginMs: CRL_STALE_MARGIN_MS, failureThreshold: CRL_FAILURES_BEFORE_ALERT });
  const holder = overrides.holder ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const checkSystemAlerts = createCheckSystemAlerts({ storage: repositories, clock, health: systemHealth(crl, deviceCa, directory) });
  const brokerFleet =
    overrides.brokerFleet !== undefined
      ? overrides.brokerFleet
      : crlPublication?.issuerKeyId
        ? createBrokerFleet({
            storage: repositories,
            clock,
            settings: {
              lagAlertMs: config.brokerFleet.lagAlertSeconds * SECOND_MS,
              reportTimeoutMs: config.brokerFleet.reportTimeoutSeconds * SECOND_MS,
              issuerKeyIds: () => crlPublication!.issuerKeyIds(),
            },
          })
        : null;
  const deliverNotifications = createDeliverNotifications({
    storage: repositories,
    clock,
    sender: overrides.sender ?? createHttpWebhookSender({ allowPrivateNetworks: config.webhookAllowPrivateNetworks }),
    secrets,
    settings: { ...DEFAULT_DELIVERY_SETTINGS, retry: DEFAULT_RETRY_POLICY, ...overrides.delivery },
  });

  // worker --once: the CRL (the long task at a large CRL) runs beside the tasks that do not need it;
  // what reads its outcome (freshness, broker lag) and the notifications the others queued come after.
  const afterRevocations = ['scheduled-revocations'];
  const afterCrl = crl ? ['crl'] : afterRevocations;
  const tasks: WorkerTask[] = [
    { name: 'scheduled-revocations', everyMs: intervals['scheduled-revocations'], run: async () => ({ ...(await applyScheduledRevocations()) }) },
    ...(crl ? [{ name: 'crl', everyMs: intervals.crl, onceAfter: afterRevocations, run: async () => summarise(await crl.publishNow()) }] : []),
    { name: 'mark-expired', everyMs: intervals['mark-expired'], onceAfter: afterRevocations, run: markExpired },
    { name: 'renewal-advice', everyMs: intervals['renewal-advice'], onceAfter: ['mark-expired'], run: publishRenewalAdvice },
    { name: 'expiry-alerts', everyMs: intervals['expiry-alerts'], onceAfter: ['renewal-advice'], run: raiseExpiryAlerts },
    // Without a Device CA there is no CRL to go stale.
    // Also the other system alerts (broker reload, CA expiry) of this replica.
    ...(crl ? [{ name: 'crl-freshness', everyMs: intervals['crl-freshness'], onceAfter: ['crl', 'expiry-alerts'], run: async () => ({ ...(await checkCrlFreshness()), system: await checkSystemAlerts() }) }] : []),
    ...(brokerFleet ? [{ name: 'broker-nodes', everyMs: intervals['broker-nodes'], onceAfter: [...afterCrl, 'expiry-alerts'], run: async () => ({ ...(await brokerFleet.checkNodes()) }) }] : []),
    { name: 'notifications', everyMs: intervals.notifications, run: countingDeliveries(deliverNotifications, overrides.metrics) },
    // Stored CRL entries for rows revoked before migration 035 (--once: after the publication, which it would slow down).
    { name: 'crl-entry-backfill', everyMs: intervals['crl-entry-backfill'], onceAfter: afterCrl, run: backfillCrlEntries },
  ];

  const leases = createLeases(db);
  const scheduler = createScheduler({
    tasks,
    leases,
    clock,
    holder,
    logger: log,
    metrics: overrides.metrics ? workerMetrics(overrides.metrics) : undefined,
    timers: overrides.timers,
    pollMs: overrides.pollMs,
  });

  return {
    scheduler,
    crlPublication,
    leases,
    holder,
    tasks,
    runOnce: () => scheduler.runOnce(),
    async start() {
      await crlPublication?.start();
      await brokerAcl?.start();
      scheduler.start();
    },
    async close() {
      await scheduler.stop();
      // Also waits for a publication that runOnce's tasks started (scheduled revocations publish on demand).
      await crlPublication?.publisher?.idle();
      await crlPublication?.stop();
      await brokerAcl?.stop();
      await mqttAdvice?.close();
      await directory?.close();
      if (!overrides.storage) await storage.close();
    },
  };
}

/** certfleet_webhook_deliveries_total{result=delivered|retrying|dead}: each run's outcomes counted in `registry`. */
function countingDeliveries(run: () => Promise<{ delivered: number; retrying: number; dead: number }>, registry: Registry | undefined) {
  if (!registry) return run;
  const name = 'certfleet_webhook_deliveries_total';
  const counter =
    (registry.getSingleMetric(name) as Counter<'result'> | undefined) ??
    new Counter({ name, help: 'Webhook delivery attempts by result (delivered, retrying: failed and retried later, dead: given up)', labelNames: ['result'], registers: [registry] });
  for (const result of ['delivered', 'retrying', 'dead']) counter.inc({ result }, 0);
  return async () => {
    const counts = await run();
    for (const result of ['delivered', 'retrying', 'dead'] as const) if (counts[result] > 0) counter.inc({ result }, counts[result]);
    return counts;
  };
}

/** The scalar fields of what the publisher returned (CRL number, entry count...), for the tick's log line. */
function summarise(result: unknown): Record<string, unknown> {
  if (!result || typeof result !== 'object') return {};
  return Object.fromEntries(
    Object.entries(result as Record<string, unknown>).filter(([, v]) => ['number', 'string', 'boolean', 'bigint'].includes(typeof v)).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v]),
  );
}
