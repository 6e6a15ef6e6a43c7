/**
 * `certfleet api` on several processes (API_PROCESSES > 1, Postgres only): Node's cluster module
 * forks that many API processes which share the API port (and the EST port), the primary hands out
 * the connections in turn. Each process is a whole API replica on the one database (as several
 * replicas behind a load balancer are): HTTP, lint, signing and the responses of a request run in
 * one of them, so issuance uses as many cores as there are processes instead of one.
 *
 * What is per process, and so divided or given to one process only:
 * - the per-tenant issuance rate limit (ISSUANCE_RATE_PER_MINUTE, ISSUANCE_BURST): each process
 *   gets its share (rounded up), so the sum is the configured limit (the split follows the
 *   round robin of connections, so it is approximate);
 * - RSA key generation threads (KEYGEN_WORKERS unset: cores − 1 shared out, at least 1 each);
 * - MQTT renewal (MQTT_RENEWAL): answered by the first process only, one answer per request;
 * - renewal admission (RENEWAL_MAX_CONCURRENT and the queues) stays per process, as documented;
 * - /metrics describes the process that answered the scrape.
 */
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Config } from '../config.ts';
import type { ProcessLogger } from '../support/logger.ts';

/** The environment variable naming a forked API process's index (0 … API_PROCESSES − 1). */
export const API_PROCESS_INDEX = 'CERTFLEET_API_PROCESS_INDEX';

/** What a forked API process sends the primary once it listens. */
export const READY_MESSAGE = 'certfleet-api-ready';

/** Its index when this process is one of the cluster's API processes, else null. */
export function apiProcessIndex(): number | null {
  if (cluster.isPrimary) return null;
  const raw = process.env[API_PROCESS_INDEX];
  return raw === undefined ? null : Number(raw);
}

/** The configuration of API process `index` of `count` (see the module comment). */
export function configForApiProcess(config: Config, index: number, count: number, env: NodeJS.ProcessEnv = process.env): Config {
  const share = (n: number) => Math.max(1, Math.ceil(n / count));
  return {
    ...config,
    issuanceRatePerMinute: config.issuanceRatePerMinute === 0 ? 0 : share(config.issuanceRatePerMinute),
    issuanceBurst: share(config.issuanceBurst),
    keygenWorkers: env.KEYGEN_WORKERS !== undefined && env.KEYGEN_WORKERS !== '' ? config.keygenWorkers : Math.max(1, Math.floor((availableParallelism() - 1) / count)),
    mqttRenewal: config.mqttRenewal && index === 0,
  };
}

/**
 * The primary: forks `count` API processes, returns once SIGINT/SIGTERM stopped them all (0), or
 * when one could not start (1, the others stopped). A process that dies later is replaced.
 */
export async function runApiCluster(config: Config, logger: ProcessLogger): Promise<number> {
  const count = config.apiProcesses;
  let stopping = false;
  let failed = false;
  const ready = new Set<number>();
  const workers = new Map<number, ReturnType<typeof cluster.fork>>();
  let allReady: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (allReady = resolve));
  let stopAll: () => void = () => undefined;
  const stopRequested = new Promise<void>((resolve) => (stopAll = resolve));

  const fork = (index: number) => {
    const worker = cluster.fork({ [API_PROCESS_INDEX]: String(index) });
    workers.set(index, worker);
    worker.on('message', (m: unknown) => {
      if (m !== READY_MESSAGE) return;
      ready.add(index);
      if (ready.size === count) allReady();
    });
    worker.once('exit', (code, signal) => {
      if (workers.get(index) === worker) workers.delete(index);
      if (stopping) return;
      if (!ready.has(index)) {
        // It never listened (bad configuration, database unreachable): stop, as one process would.
        logger.error({ event: 'api_process_failed', index, code, signal }, `API process ${index} exited before it listened`);
        failed = true;
        stopAll();
        return;
      }
      logger.error({ event: 'api_process_exited', index, code, signal }, `API process ${index} exited (${signal ?? code}); starting another`);
      ready.delete(index);
      fork(index);
    });
  };
  for (let i = 0; i < count; i++) fork(i);
  const onSignal = () => stopAll();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await Promise.race([started.then(() => logger.info({ event: 'started', api_processes: count, port: config.port }, `certfleet api: ${count} processes listening on port ${config.port}`)), stopRequested]);
  await stopRequested;
  stopping = true;
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  await Promise.all(
    [...workers.values()].map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.isDead()) return resolve();
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
    ),
  );
  return failed ? 1 : 0;
}
