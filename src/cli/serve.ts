import { estListenerConfig, type Config } from '../config.ts';
import { createService } from '../composition/service.ts';
import { createWorker } from '../composition/worker.ts';
import { createLogger } from '../support/logger.ts';
import type { Flags } from './spec.ts';
import { apiProcessIndex, configForApiProcess, READY_MESSAGE, runApiCluster } from './api-cluster.ts';

/** Runs until SIGINT/SIGTERM. */
export async function serveCommand(_flags: Flags, loaded: Config, parts: { api: boolean; worker: boolean }): Promise<number> {
  estListenerConfig(loaded); // refuses EST_PORT without its certificate before anything starts
  const logger = createLogger({ level: loaded.logLevel });
  let config = loaded;
  const clustered = parts.api && !parts.worker && loaded.apiProcesses > 1;
  if (clustered) {
    // Several processes on one database: PGlite allows one process.
    if (!loaded.databaseUrl) throw new Error('API_PROCESSES > 1 needs DATABASE_URL (Postgres): the embedded PGlite database allows one process');
    const index = apiProcessIndex();
    if (index === null) return runApiCluster(loaded, logger);
    config = configForApiProcess(loaded, index, loaded.apiProcesses);
  }
  const service = await createService(config, {
    logger,
    // serve publishes the CRL (file + broker reload); api leaves it to the worker (PGlite: always in-process).
    publishCrl: parts.worker,
  });
  let address: string;
  let renewal: Awaited<ReturnType<typeof service.renewal.start>>;
  let worker: Awaited<ReturnType<typeof createWorker>> | null;
  try {
    address = await service.app.listen({ port: config.port, host: config.host });
    renewal = await service.renewal.start(service.app.log);
    // The worker shares the service's storage (PGlite allows one process), clock, logger and /metrics.
    worker = parts.worker
      ? await createWorker(config, {
          clock: service.deps.clock,
          storage: service.storage,
          metrics: service.metrics,
          crl: service.crl.publisher,
          ca: service.ca.ca,
          revocations: service.crl.listener,
          brokerFleet: service.brokerFleet,
          logger,
        })
      : null;
  } catch (error) {
    // A port in use, an EST listener that cannot start: the process ends with the message, never
    // runs on without its listener (the database, the CRL publisher and their timers are closed).
    await service.close();
    throw error;
  }
  const broker = service.crl.broker;
  logger.info(
    {
      event: 'started',
      address,
      storage: service.storage.driver.kind === 'pg' ? 'postgres' : `embedded PGlite in ${config.dataDir}/db`,
      device_ca: service.ca.ca ? `${config.caCertPath}${service.ca.created ? ' (development CA created now)' : ''}` : service.ca.problem,
      crl_file: config.crlOutputPath,
      public_crl: service.crl.distributionPointUrl,
      broker_reload: broker ? broker.reload : 'not in this process (api: the worker publishes the CRL)',
      broker_reload_configured: broker?.reloadConfigured ?? false,
      session_kicking: broker ? (broker.sessionKicking ? 'configured (BROKER_ADMIN_URL)' : 'not configured (set BROKER_ADMIN_URL)') : 'not in this process',
      session_kicking_configured: broker?.sessionKicking ?? false,
      auth: service.authMode,
      api_docs: `${address}/docs`,
      est: renewal.est ?? 'off (set EST_PORT, EST_TLS_CERT_PATH, EST_TLS_KEY_PATH)',
      // Within RLIMIT_NOFILE: connections cannot take the descriptors the database and file writes need.
      connection_caps: { api: service.connectionCaps.api, est: service.connectionCaps.est, fd_limit: service.connectionCaps.limit, fd_reserved: service.connectionCaps.reserved },
      mqtt_renewal: renewal.mqtt ?? 'off (MQTT_RENEWAL=true with BROKER_ADMIN_*)',
      mqtt_provisioning: renewal.provisioning ?? 'off (MQTT_PROVISIONING=true with BROKER_ADMIN_*; broker-config --provisioning-port)',
      worker_tasks: worker ? worker.tasks.map((t) => t.name) : null,
    },
    `certfleet listening on ${address}`,
  );
  await worker?.start();
  if (clustered) process.send?.(READY_MESSAGE);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await worker?.close();
  await service.close();
  // A cluster's API process: its channel to the primary would keep it alive.
  if (clustered) process.disconnect?.();
  return 0;
}
