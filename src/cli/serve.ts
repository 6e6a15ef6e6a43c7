import type { Config } from '../config.ts';
import { createService } from '../composition/service.ts';
import { createWorker } from '../composition/worker.ts';
import type { Flags } from './commands.ts';

/** Runs until SIGINT/SIGTERM. */
export async function serveCommand(_flags: Flags, config: Config, parts: { api: boolean; worker: boolean }): Promise<number> {
  const service = await createService(config, {
    logger: { level: config.logLevel, redact: ['req.headers.authorization', 'req.headers.cookie'] },
    // serve publishes the CRL (file + broker reload); api leaves it to the worker (PGlite: always in-process).
    publishCrl: parts.worker,
  });
  const address = await service.app.listen({ port: config.port, host: config.host });
  const renewal = await service.renewal.start(service.app.log);
  const lines = [
    `certfleet listening on ${address} (${service.storage.driver.kind === 'pg' ? 'Postgres' : `embedded PGlite in ${config.dataDir}/db`})`,
    service.ca.ca
      ? `Device CA: ${config.caCertPath}${service.ca.created ? ' (development CA created now)' : ''}`
      : `Device CA: ${service.ca.problem}`,
    `CRL file: ${config.crlOutputPath}; public CRL: ${config.publicBaseUrl}/pki/crl`,
    `Auth: ${service.authMode}`,
    ...(service.authWarning ? [`WARNING: ${service.authWarning}`] : []),
    `API docs: ${address}/docs`,
    `EST (device enrollment and renewal): ${renewal.est ?? 'off (set EST_PORT, EST_TLS_CERT_PATH, EST_TLS_KEY_PATH)'}`,
    `MQTT renewal (certfleet/renew/<CN>/request): ${renewal.mqtt ?? 'off (MQTT_RENEWAL=true with BROKER_ADMIN_*)'}`,
  ];
  // The worker shares the service's storage (PGlite allows one process), clock and /metrics.
  const worker = parts.worker
    ? await createWorker(config, {
        clock: service.deps.clock,
        storage: service.storage,
        metrics: service.metrics,
        crl: service.crl.publisher,
        revocations: service.crl.listener,
      })
    : null;
  if (worker) lines.push(`Worker: ${worker.tasks.map((t) => t.name).join(', ')} (leases in the database; JSON log lines on stdout)`);
  console.log(lines.join('\n'));
  await worker?.start();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await worker?.close();
  await service.close();
  return 0;
}
