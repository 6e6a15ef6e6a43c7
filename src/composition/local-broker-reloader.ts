/**
 * The reloader of the broker beside this process (BROKER_PID_FILE / BROKER_RELOAD_COMMAND), with
 * the bound on reloads of a large CRL (src/broker/bounded-reloader.ts). The CRL publication and
 * the ACL sync of one process share one instance per configuration (a Mosquitto SIGHUP re-reads
 * the CRL whichever of them sends it), so the bound covers both.
 */
import type { Config } from '../config.ts';
import { createBrokerReloader, type BrokerReloader } from '../broker/broker-reloader.ts';
import { boundReloads, DEFAULT_LARGE_CRL_BYTES, DEFAULT_LARGE_CRL_RELOAD_INTERVAL_MS, fileBytes } from '../broker/bounded-reloader.ts';
import type { Logger } from '../support/logger.ts';

type ReloaderConfig = Pick<Config, 'brokerPidFile' | 'brokerReloadCommand'> & Partial<Pick<Config, 'crlOutputPath'>> & { brokerFleet?: Partial<Config['brokerFleet']> };

const shared = new WeakMap<object, BrokerReloader>();

/** `given` (tests, `initial-crl`) is bounded too; without it one reloader per config object. */
export function localBrokerReloader(config: ReloaderConfig, logger: Logger, given?: BrokerReloader): BrokerReloader {
  if (!given) {
    const known = shared.get(config);
    if (known) return known;
  }
  const inner = given ?? createBrokerReloader({ pidFile: config.brokerPidFile ?? undefined, command: config.brokerReloadCommand ?? undefined, logger });
  const bounded = config.crlOutputPath
    ? boundReloads(inner, {
        crlBytes: fileBytes(config.crlOutputPath),
        largeCrlBytes: config.brokerFleet?.largeCrlBytes ?? DEFAULT_LARGE_CRL_BYTES,
        intervalMs: config.brokerFleet?.largeCrlReloadIntervalMs ?? DEFAULT_LARGE_CRL_RELOAD_INTERVAL_MS,
        logger,
      })
    : inner;
  if (!given) shared.set(config, bounded);
  return bounded;
}
