import type { Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { createWorker, type WorkerOverrides } from '../composition/worker.ts';
import { createLogger } from '../support/logger.ts';
import { UsageError, type Flags } from './spec.ts';
import { metricsAuthorized } from '../http/metrics-auth.ts';
import { createLimitedServer } from '../support/listener.ts';

/**
 * `certfleet worker`: the periodic tasks until SIGINT/SIGTERM, coordinated with any other
 * replicas through leases in Postgres; one JSON line per task run on stdout.
 * `--once`: every task once, in order, then exit 1 if one failed (a task another replica is
 * running at that moment is skipped, not failed). `--metrics-port N`: Prometheus /metrics.
 */
export async function workerCommand(flags: Flags, config: Config, overrides: WorkerOverrides = {}): Promise<number> {
  const metrics = new Registry();
  const log = overrides.logger ?? createLogger({ level: config.logLevel });
  // A one-shot run keeps no CRL entries in memory for later incremental publications: there are none.
  const worker = await createWorker(flags.once ? { ...config, crlFullRebuildMinutes: 0 } : config, { metrics, ...overrides, logger: log });
  if (flags.once) {
    let failed: string[] = [];
    try {
      const reports = await worker.runOnce();
      failed = reports.filter((r) => r.status === 'failed').map((r) => r.task);
      if (flags.json) console.log(JSON.stringify({ tasks: reports, failed }));
      else {
        const skipped = reports.filter((r) => r.status === 'skipped').map((r) => r.task);
        console.error(
          `certfleet worker --once: ${reports.length} tasks, ${failed.length ? `failed: ${failed.join(', ')}` : 'none failed'}` +
            (skipped.length ? `; skipped (running on another replica): ${skipped.join(', ')}` : ''),
        );
      }
    } finally {
      await worker.close();
    }
    return failed.length ? 1 : 0;
  }

  let server: Server | null = null;
  if (flags['metrics-port'] !== undefined) {
    const port = Number(flags['metrics-port']);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--metrics-port must be a whole number from 0 to 65535 (got "${String(flags['metrics-port'])}")`);
    collectDefaultMetrics({ register: metrics });
    server = createLimitedServer(config.http, (request, response) => {
      if (request.url !== '/metrics') {
        response.writeHead(404).end();
        return;
      }
      if (!metricsAuthorized(request.headers.authorization, config.metricsToken)) {
        response.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
        return;
      }
      metrics.metrics().then(
        (text) => response.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    });
    const listening = server;
    try {
      await new Promise<void>((resolve, reject) => {
        listening.once('error', reject);
        listening.listen(port, config.host, () => {
          listening.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      // The process ends with the message (a port in use), never runs on without its metrics.
      await worker.close();
      throw new Error(`--metrics-port ${port}: ${(error as Error).message}`, { cause: error });
    }
  }
  // Listening for the stop signals before the readiness line: whoever reads it may stop us at once.
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await worker.start();
  const broker = worker.crlPublication?.broker ?? null;
  log.info(
    {
      event: 'started',
      holder: worker.holder,
      worker_tasks: worker.tasks.map((t) => t.name),
      metrics: server ? `${config.host}:${(server.address() as { port: number }).port}/metrics` : null,
      broker_reload: broker?.reload ?? 'no CRL tasks',
      broker_reload_configured: broker?.reloadConfigured ?? false,
      session_kicking_configured: broker?.sessionKicking ?? false,
    },
    `certfleet worker ${worker.holder} started`,
  );
  // The readiness line on stderr (stdout holds only log lines).
  console.error(`certfleet worker ${worker.holder}: ${worker.tasks.map((t) => t.name).join(', ')}${server ? `; metrics on ${config.host}:${(server.address() as { port: number }).port}/metrics` : ''}`);
  await stopRequested;
  await worker.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  return 0;
}
