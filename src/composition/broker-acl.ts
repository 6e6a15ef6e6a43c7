/**
 * The broker's acl_file, wired (src/broker/acl-sync.ts does the file and the reload):
 *
 *   const acl = createBrokerAclPublication({ config, storage, logger, publish });
 *   deps.brokerAcl = acl.listener;   // register-device and the grant changes call it
 *   await acl.start();               // keeping process: LISTEN, first sync
 *   await acl.stop();
 *
 * The process that keeps the broker's files (serve, worker; PGlite always) has BROKER_ACL_PATH
 * (acl_file mode) and/or BROKER_GRANTS_PATH (certfleet_acl plugin mode: tenant grants only, so a
 * device registration changes nothing there and reloads nothing) and rewrites the file on start
 * and after every change, then reloads the broker
 * (BROKER_PID_FILE / BROKER_RELOAD_COMMAND). A change is told in-process (the caller waits for
 * the file and the reload, bounded) and, on Postgres, NOTIFYed on `certfleet_acl` so the worker
 * of another process rewrites its broker's file too.
 *
 * With BROKER_RABBITMQ_ADMIN_URL the same process keeps a RabbitMQ node's device users and their
 * topic permissions in step too (src/broker/rabbitmq-sync.ts), on the same triggers. The broker
 * reload is the process's one bounded reloader (src/composition/local-broker-reloader.ts).
 */
import type { BrokerAclListener } from '../app/ports.ts';
import type { Config } from '../config.ts';
import { readFile } from 'node:fs/promises';
import { createAclSync, type AclSync } from '../broker/acl-sync.ts';
import { renderRabbitmqPermissions } from '../broker/rabbitmq-permissions.ts';
import { createRabbitmqSync, type RabbitmqSync } from '../broker/rabbitmq-sync.ts';
import type { BrokerReloader } from '../broker/broker-reloader.ts';
import { localBrokerReloader } from './local-broker-reloader.ts';
import { renderAclFile, renderGrantsFile, type RenderedAcl } from '../broker/mosquitto-config.ts';
import { isReservedId, RESERVED_TENANT_ID } from '../domain/identifiers.ts';
import type { Database } from '../storage/database.ts';
import type { Driver, Listening } from '../storage/driver.ts';
import { allAclDevices, allBrokerGrants } from '../storage/repos/broker-acl-repo.ts';
import { newInstanceId } from '../storage/repos/crl-repo.ts';
import { silentLogger, type Logger } from '../support/logger.ts';

export const ACL_CHANNEL = 'certfleet_acl';
/** How long a registration waits for the file and the reload before it answers anyway. */
const MAX_WAIT_MS = 10_000;
const RETRY_MS = 5_000;

export type BrokerAclConfig = Pick<Config, 'brokerAclPath' | 'brokerAclPermissive' | 'brokerPidFile' | 'brokerReloadCommand' | 'mqttRenewal'> &
  Partial<Pick<Config, 'brokerAdmin' | 'brokerGrantsPath' | 'crlOutputPath' | 'brokerRabbitmq'>> & { brokerFleet?: Partial<Config['brokerFleet']> };

export interface BrokerAclPublication {
  listener: BrokerAclListener;
  /** The acl_file's (BROKER_ACL_PATH), else the grants file's; null when this process keeps neither. */
  sync: AclSync | null;
  /** The certfleet_acl plugin's grants file (BROKER_GRANTS_PATH); null when not kept. */
  grantsSync: AclSync | null;
  /** The RabbitMQ node's device users and topic permissions (BROKER_RABBITMQ_ADMIN_URL); null when not kept here. */
  rabbitmq: RabbitmqSync | null;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The acl_file as certfleet renders it now, from the database (also `broker-config`). */
export async function renderAclFromDatabase(
  db: Database,
  options: { adminUsername: string | null; renewalTopics: boolean; permissive: boolean },
): Promise<RenderedAcl & { reserved: string[] }> {
  const { devices, grants } = await db.asOperator(async (tx) => ({ devices: await allAclDevices(tx), grants: await allBrokerGrants(tx) }));
  // certfleet's own devices (broker canaries, tenant RESERVED_TENANT_ID) get no topic at all: default deny.
  const rendered = renderAclFile({ ...options, devices: devices.filter((d) => d.tenantId !== RESERVED_TENANT_ID), grants });
  const reserved = devices
    .filter((d) => d.tenantId !== RESERVED_TENANT_ID && (isReservedId(d.tenantId) || isReservedId(d.deviceId)))
    .map((d) => `${d.tenantId}/${d.deviceId}`);
  return { ...rendered, reserved };
}

/** The certfleet_acl plugin's grants file as certfleet renders it now: the tenants' grants, no device. */
export async function renderGrantsFromDatabase(db: Database): Promise<RenderedAcl> {
  const grants = await db.asOperator((tx) => allBrokerGrants(tx));
  const rendered = renderGrantsFile(grants);
  return { text: rendered.text, devices: 0, skipped: rendered.skipped.map((t) => `tenant ${t}`) };
}

export function createBrokerAclPublication(options: {
  config: BrokerAclConfig;
  storage: { db: Database; driver: Driver };
  logger?: Logger;
  /** This process keeps the broker's files (serve, worker). PGlite always does. */
  publish?: boolean;
  reloader?: BrokerReloader;
}): BrokerAclPublication {
  const { config } = options;
  const { db, driver } = options.storage;
  const logger = options.logger ?? silentLogger;
  const instanceId = newInstanceId();
  const keepsFiles = (options.publish ?? true) || driver.kind === 'pglite';
  const keeping = config.brokerAclPath !== null && keepsFiles;
  const rabbitConfig = keepsFiles ? (config.brokerRabbitmq ?? null) : null;
  const rabbitmq = rabbitConfig
    ? createRabbitmqSync({
        management: { url: rabbitConfig.url, username: rabbitConfig.username, vhost: rabbitConfig.vhost, password: async () => (await readFile(rabbitConfig.passwordFile, 'utf8')).trim() },
        logger,
        async render() {
          const { devices, grants } = await db.asOperator(async (tx) => ({ devices: await allAclDevices(tx), grants: await allBrokerGrants(tx) }));
          // certfleet's own devices (broker canaries) get no topic: the agent gives them a user with no permission at all
          return renderRabbitmqPermissions({ devices: devices.filter((d) => d.tenantId !== RESERVED_TENANT_ID), grants, renewalTopics: config.mqttRenewal });
        },
      })
    : null;
  const keeper = keepsFiles;
  const grantsPath = config.brokerGrantsPath ?? null;
  const reloader = localBrokerReloader(config, logger, options.reloader);
  const renderOptions = { adminUsername: config.brokerAdmin?.username ?? null, renewalTopics: config.mqttRenewal, permissive: config.brokerAclPermissive };
  let reservedReported = false;
  const sync = keeping
    ? createAclSync({
        path: config.brokerAclPath as string,
        reloader,
        logger,
        async render() {
          const rendered = await renderAclFromDatabase(db, renderOptions);
          if (rendered.reserved.length && !reservedReported) {
            reservedReported = true;
            logger.warn({ event: 'reserved_device_ids', devices: rendered.reserved.slice(0, 100) }, 'registered devices use reserved ids (certfleet); they stay confined to tenant/<tenant>/device/<device>/#, but rename them');
          }
          return rendered;
        },
      })
    : null;
  // Plugin mode: only the tenant grants are in a file; a device registration leaves it unchanged
  // (no write, no broker reload): the plugin derives each device's topics from its certificate CN.
  const grantsSync =
    grantsPath !== null && keeper
      ? createAclSync({ path: grantsPath, reloader, logger, render: () => renderGrantsFromDatabase(db) })
      : null;
  const syncs = [sync, grantsSync].filter((s): s is AclSync => s !== null);
  let retry: NodeJS.Timeout | null = null;
  let stopped = false;
  let listening: Listening | null = null;
  const inFlight = new Set<Promise<unknown>>();

  function syncNow(): Promise<void> {
    if ((syncs.length === 0 && !rabbitmq) || stopped) return Promise.resolve();
    const p = syncOnce().finally(() => inFlight.delete(p));
    inFlight.add(p);
    return p;
  }
  async function syncOnce(): Promise<void> {
    await Promise.all([
      (async () => {
        for (const one of syncs) {
          try {
            const result = await one.sync();
            if (result.reloaded === false) scheduleRetry();
          } catch (error) {
            logger.error({ event: 'broker_acl_failed', err: (error as Error).message }, 'could not write the broker ACL; retrying');
            scheduleRetry();
          }
        }
      })(),
      (async () => {
        if (!rabbitmq) return;
        try {
          await rabbitmq.sync();
        } catch (error) {
          logger.error({ event: 'rabbitmq_permissions_failed', err: (error as Error).message }, 'could not update the RabbitMQ device users and permissions; retrying');
          scheduleRetry();
        }
      })(),
    ]);
  }
  function scheduleRetry() {
    if (retry || stopped) return;
    retry = setTimeout(() => {
      retry = null;
      void syncNow();
    }, RETRY_MS);
    retry.unref();
  }
  function notify() {
    if (driver.kind !== 'pg') return;
    const p = db
      .asOperator((tx) => tx.query(`SELECT pg_notify($1, json_build_object('e', 'acl', 'src', $2::text)::text)`, [ACL_CHANNEL, instanceId]))
      .catch((error: Error) => logger.warn({ err: error.message }, 'could not NOTIFY the broker ACL change; the keeping process resyncs when it reconnects'))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }

  return {
    sync: sync ?? grantsSync,
    grantsSync,
    rabbitmq,
    listener: {
      async aclChanged() {
        notify();
        if (syncs.length === 0 && !rabbitmq) return;
        let timer: NodeJS.Timeout | undefined;
        const bounded = new Promise<void>((resolve) => (timer = setTimeout(resolve, MAX_WAIT_MS)));
        await Promise.race([syncNow(), bounded]).finally(() => clearTimeout(timer));
      },
    },
    async start() {
      if (syncs.length === 0 && !rabbitmq) return;
      if (driver.listen) {
        listening = driver.listen(ACL_CHANNEL, {
          onNotification(payload) {
            try {
              if ((JSON.parse(payload) as { src?: string }).src === instanceId) return;
            } catch {
              logger.warn({ event: 'broker_acl_bad_notification', payload: payload.slice(0, 200) }, 'ignoring a malformed ACL change notification');
              return;
            }
            void syncNow();
          },
          // Changes NOTIFYed while we were not listening: resync.
          onConnected: () => void syncNow(),
          onError: (error) => logger.warn({ err: error.message }, 'broker ACL listener lost its connection; reconnecting'),
        });
      }
      await syncNow();
    },
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      await listening?.close();
      listening = null;
      await Promise.allSettled([...inFlight]);
    },
  };
}
