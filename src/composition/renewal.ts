import { readFile } from 'node:fs/promises';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { AppDeps } from '../app/deps.ts';
import type { UseCases } from '../app/use-cases.ts';
import type { Config } from '../config.ts';
import { createDeviceRenewal, type DeviceRenewal } from '../renewal/device-renewal.ts';
import { buildEstServer } from '../renewal/est-server.ts';
import { createRenewalStore } from '../storage/repos/renewal-repo.ts';

export interface RenewalWiring {
  renewal: DeviceRenewal;
  /** Starts the EST listener when EST_PORT is set; returns its URL, or null when EST is off. */
  startEst(logger: FastifyBaseLogger): Promise<string | null>;
  close(): Promise<void>;
}

export function createRenewalWiring(config: Config, deps: AppDeps, useCases: UseCases): RenewalWiring {
  const renewal = createDeviceRenewal({
    store: createRenewalStore(deps.db),
    useCases,
    authority: deps.authority,
    keys: deps.keys,
    clock: deps.clock,
  });
  let est: FastifyInstance | null = null;
  return {
    renewal,
    async startEst(logger) {
      if (!config.est) return null;
      const [tlsCertPem, tlsKeyPem] = await Promise.all([readFile(config.est.tlsCertPath, 'utf8'), readFile(config.est.tlsKeyPath, 'utf8')]);
      est = await buildEstServer({ renewal, tlsCertPem, tlsKeyPem, deviceCaPem: () => deps.authority.caCertPem(), logger: logger.child({ listener: 'est' }) });
      const address = await est.listen({ port: config.est.port, host: config.est.host });
      return `${address}/.well-known/est`;
    },
    async close() {
      await est?.close();
    },
  };
}
