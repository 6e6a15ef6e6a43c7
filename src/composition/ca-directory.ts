/**
 * The CA directory of one process, over the certificate_authorities records (issue 19).
 *
 * Start (`openCaDirectory`): the CA configured by DEVICE_CA_CERT_PATH/DEVICE_CA_KEY_PATH (or
 * DEVICE_CA_KEY_URI) is matched by its subject key identifier with a record, or imported as the
 * active global CA when the database has none (an upgrade needs no step: certificates issued
 * before are given its id, in batches; its CRL row and number series are the same crl_state row).
 * Then the key of every published CA (staged, active, retiring) is loaded: a key this process
 * cannot use (missing file, wrong passphrase, token URI that does not resolve, wrong PIN, a key
 * that does not match its certificate) stops the start with the reason.
 *
 * Changes: `changed()` (after this process changed a record) re-reads and NOTIFYs `certfleet_ca`;
 * other processes LISTEN (Postgres) and also re-read every `refreshMs` (60 s), so a missed
 * notification costs at most that long. onChange listeners fire after the new set is loaded.
 */
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.ts';
import type { Clock } from '../domain/clock.ts';
import { isIssuingActive, isPublishedCaStatus, type CaRecord } from '../domain/ca.ts';
import { AlreadyExistsError, type Storage as AppStorage } from '../app/storage-ports.ts';
import { changeListeners, directoryOver, directoryView, type CaDirectory } from '../pki/ca-directory.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { createCaKeystore } from '../pki/ca-keystore.ts';
import type { Driver, Listening } from '../storage/driver.ts';
import type { Database } from '../storage/database.ts';
import { crlDistributionPointUrl } from '../crl/publish-crl.ts';
import { silentLogger, type Logger } from '../support/logger.ts';
import { loadCaForConfig, type LoadedCa as ConfigCa } from './load-ca.ts';

export const CA_CHANNEL = 'certfleet_ca';
const REFRESH_MS = 60_000;
const BACKFILL_BATCH = 5_000;

export interface StoredCaDirectory extends CaDirectory {
  /** The CA loaded from DEVICE_CA_* (null: none configured or found); its `problem` when issuing stays at 503. */
  configured: ConfigCa;
  keystore: ReturnType<typeof createCaKeystore>;
  /** After this process changed a record: re-read now, and tell the other processes. */
  changed(): Promise<void>;
  close(): Promise<void>;
}

export interface CaDirectoryOptions {
  config: Config;
  storage: AppStorage;
  db: Database;
  driver: Driver;
  clock: Clock;
  logger?: Logger;
  /** Test seam: re-read period (ms); null: no timer. */
  refreshMs?: number | null;
}

const configuredCaPresent = (config: Config) => config.pkcs11 !== null || (existsSync(config.caCertPath) && existsSync(config.caKeyPath));

/** Imports or matches the configured CA (see the file comment); returns the records after it. */
async function adoptConfiguredCa(options: CaDirectoryOptions, ca: DeviceCa): Promise<CaRecord> {
  const record = await adoptOnce(options, ca).catch((error: unknown) => {
    // Another process (API_PROCESSES, a replica) inserted the same record between our read and our
    // insert: its record is ours (same key id), read it again.
    if (error instanceof AlreadyExistsError) return adoptOnce(options, ca);
    throw error;
  });
  // Certificates issued before the records existed name this CA by issuer: give them its id.
  for (;;) {
    const n = await options.storage.asOperator(({ cas }) => cas.backfillCaId(record.id, record.issuerLabel, BACKFILL_BATCH));
    if (n < BACKFILL_BATCH) break;
  }
  return record;
}

function adoptOnce(options: CaDirectoryOptions, ca: DeviceCa): Promise<CaRecord> {
  const { config, storage, clock } = options;
  const issuerKeyId = ca.subjectKeyId.toString('hex');
  return storage.asOperator(async ({ cas }) => {
    const known = await cas.findCaByKeyId(issuerKeyId);
    // The configured CA keeps the default distribution point, which follows PUBLIC_BASE_URL as it did
    // before CA records (certificates issued before a change keep the old URL: the broker's file
    // covers them all). A CA created through the API keeps its own /pki/ca/{id}/crl for life.
    const configuredUrl = crlDistributionPointUrl(config);
    if (known && known.crlDistributionPoint !== configuredUrl && known.crlDistributionPoint.endsWith('/pki/crl')) {
      await cas.setCaCrlUrl(known.id, configuredUrl);
      return { ...known, crlDistributionPoint: configuredUrl };
    }
    if (known) return known;
    const now = clock.now();
    // DEVICE_CA_* replaced by a CA certfleet does not know (how deployments rolled over before CA
    // records): it becomes the active global CA and the previous one retiring (still published).
    const active = await cas.lockActiveCa(null);
    if (active) {
      await cas.setCaStatus(active.id, 'retiring', ['active'], now);
      options.logger?.warn({ ca: active.id }, `DEVICE_CA_* names a new Device CA (key id ${issuerKeyId}): it becomes the active global CA, ${active.id} is retiring`);
    }
    return cas.insertCa({
      id: `ca_${issuerKeyId.slice(0, 16)}`,
      tenantId: null,
      status: 'active',
      subject: ca.certificate.subject,
      issuerLabel: ca.issuerLabel,
      issuerKeyId,
      notBefore: ca.certificate.notBefore,
      notAfter: ca.certificate.notAfter,
      certPem: ca.certPem,
      keyRef: config.pkcs11 ? { kind: 'pkcs11', uri: config.pkcs11.keyUri } : { kind: 'file', path: config.caKeyPath },
      crlDistributionPoint: crlDistributionPointUrl(config),
      createdAt: now,
      createdBy: 'system:start',
    });
  });
}

export async function openCaDirectory(options: CaDirectoryOptions): Promise<StoredCaDirectory> {
  const { config, storage, clock } = options;
  const logger = options.logger ?? silentLogger;
  const keystore = createCaKeystore({
    dir: config.caKeys.dir,
    passphrase: { file: config.caKeyPassphraseFile, value: config.caKeyPassphrase },
    modulePath: config.caKeys.modulePath,
    pinFile: config.caKeys.pinFile,
    sessions: config.caKeys.sessions,
    // A root's key signs the intermediates made under it (only a published root's key is loaded).
    issuerOf: (id) => view.byId(id)?.ca ?? null,
  });
  const instanceId = randomUUID();
  // Keys loaded in this process, by CA id.
  const loaded = new Map<string, DeviceCa>();
  let configured: ConfigCa = { ca: null, created: false, problem: null };
  let configuredId: string | null = null;

  const initial = await storage.asOperator(({ cas }) => cas.listCas());
  const globalActive = initial.find((r) => r.tenantId === null && isIssuingActive(r));
  // Production: a missing DEVICE_CA_* is fine once a global CA is a record. Embedded (development)
  // mode keeps creating its development CA in the data dir when none is there.
  if (!globalActive || configuredCaPresent(config) || !config.productionMode) {
    configured = await loadCaForConfig(config, clock);
  }
  try {
    if (configured.ca) {
      const record = await adoptConfiguredCa(options, configured.ca);
      configuredId = record.id;
      if (isPublishedCaStatus(record.status)) loaded.set(record.id, configured.ca);
      else logger.warn({ ca: record.id, status: record.status }, `the Device CA configured by DEVICE_CA_* is ${record.status}: it signs nothing`);
    }
  } catch (e) {
    await configured.ca?.signer.close();
    throw e;
  }

  let records: CaRecord[] = [];
  let view = directoryView([]);
  let signature = '';
  const changes = changeListeners((error) => logger.error({ err: (error as Error).message }, 'a CA directory listener failed'));

  /** Re-reads the records and loads the keys of the published ones. `strict`: a key that cannot be loaded throws (start). */
  async function reload(strict: boolean): Promise<void> {
    records = await storage.asOperator(({ cas }) => cas.listCas());
    // The configured CA's record is gone (a database restored from a backup older than it): import it again.
    if (configured.ca && configuredId && !records.some((r) => r.id === configuredId)) {
      await adoptConfiguredCa(options, configured.ca);
      records = await storage.asOperator(({ cas }) => cas.listCas());
    }
    for (const record of records) {
      if (!isPublishedCaStatus(record.status) || loaded.has(record.id)) continue;
      try {
        loaded.set(record.id, await keystore.load(record));
      } catch (e) {
        const message = `the key of CA ${record.id} (${record.status}, ${record.subject}) cannot be used: ${(e as Error).message}`;
        if (strict) throw new Error(message);
        logger.error({ ca: record.id }, `${message}; retried at the next re-read`);
      }
    }
    // Keys of CAs that are no longer published are released (never the configured one: closed with the directory).
    for (const [id, ca] of loaded) {
      const record = records.find((r) => r.id === id);
      if (record && !isPublishedCaStatus(record.status) && id !== configuredId) {
        loaded.delete(id);
        await ca.signer.close().catch(() => undefined);
      }
    }
    view = directoryView(records.map((record) => ({ record, ca: isPublishedCaStatus(record.status) ? (loaded.get(record.id) ?? null) : null })));
    const next = records.map((r) => `${r.id}:${r.status}:${loaded.has(r.id)}`).join(',');
    if (next !== signature) {
      const first = signature === '';
      signature = next;
      if (!first) changes.fire();
    }
  }

  try {
    await reload(true);
  } catch (e) {
    for (const ca of loaded.values()) await ca.signer.close().catch(() => undefined);
    throw e;
  }

  let queue: Promise<void> = Promise.resolve();
  const refresh = () => (queue = queue.then(() => reload(false)).catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'could not re-read the CA records')));

  let listening: Listening | null = null;
  if (options.driver.kind === 'pg' && options.driver.listen) {
    listening = options.driver.listen(CA_CHANNEL, {
      onNotification: (payload) => {
        try {
          if ((JSON.parse(payload) as { src?: string }).src === instanceId) return;
        } catch {
          /* not ours: re-read anyway */
        }
        void refresh();
      },
      onConnected: () => void refresh(),
      onError: (error) => logger.warn({ err: error.message }, 'CA change listener lost its connection; reconnecting'),
    });
  }
  const refreshMs = options.refreshMs === undefined ? REFRESH_MS : options.refreshMs;
  const timer = refreshMs ? setInterval(() => void refresh(), refreshMs) : null;
  timer?.unref();

  return {
    configured,
    keystore,
    ...directoryOver(() => view, changes, refresh),
    async changed() {
      await refresh();
      if (options.driver.kind === 'pg') {
        await options.db
          .asOperator((tx) => tx.query(`SELECT pg_notify($1, json_build_object('e', 'ca', 'src', $2::text)::text)`, [CA_CHANNEL, instanceId]))
          .catch((e: Error) => logger.warn({ err: e.message }, 'could not NOTIFY the CA change; other processes re-read within a minute'));
      }
    },
    async close() {
      if (timer) clearInterval(timer);
      await listening?.close();
      await queue;
      for (const ca of loaded.values()) await ca.signer.close().catch(() => undefined);
      loaded.clear();
    },
  };
}
