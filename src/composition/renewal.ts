import { readFile } from 'node:fs/promises';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { AppDeps } from '../app/deps.ts';
import type { UseCases } from '../app/use-cases.ts';
import { readBrokerAdmin } from '../broker/admin-credentials.ts';
import { estListenerConfig, type Config, type HttpLimits } from '../config.ts';
import { createDeviceRenewal, type DeviceRenewal } from '../renewal/device-renewal.ts';
import { buildEstServer } from '../renewal/est-server.ts';
import { startMqttRenewal, type MqttRenewal } from '../renewal/mqtt-renewal.ts';
import type { Database } from '../storage/database.ts';
import { createRenewalStore } from '../storage/repos/renewal-repo.ts';

export interface RenewalWiring {
  renewal: DeviceRenewal;
  /** Starts the EST listener (EST_PORT) and the MQTT renewal responder (MQTT_RENEWAL); one line each, for the banner. */
  start(logger: FastifyBaseLogger): Promise<{ est: string | null; mqtt: string | null }>;
  /** The EST listener once started (null before, or when EST_PORT is unset). */
  estServer(): FastifyInstance | null;
  close(): Promise<void>;
}

/** `estLimits`: the EST listener's timeouts and its connection cap within the descriptor budget. */
export function createRenewalWiring(config: Config, deps: AppDeps, useCases: UseCases, db: Database, estLimits: HttpLimits): RenewalWiring {
  const renewal = createDeviceRenewal({
    store: createRenewalStore(db),
    useCases,
    authority: deps.authority,
    keys: deps.keys,
    clock: deps.clock,
  });
  let est: FastifyInstance | null = null;
  let mqtt: MqttRenewal | null = null;

  async function startEst(logger: FastifyBaseLogger): Promise<string | null> {
    const listener = estListenerConfig(config);
    if (!config.est || !listener) return null;
    const [tlsCertPem, tlsKeyPem] = await Promise.all([readFile(listener.tlsCertPath, 'utf8'), readFile(listener.tlsKeyPath, 'utf8')]);
    est = await buildEstServer({
      renewal,
      tlsCertPem,
      tlsKeyPem,
      deviceCaPem: () => deps.authority.caCertPem(),
      limits: estLimits,
      handshakeTimeoutMs: config.est.handshakeTimeoutMs,
      logger: logger.child({ listener: 'est' }),
    });
    // Fastify names the address http://: it does not know that the server it was given speaks TLS.
    const address = (await est.listen({ port: config.est.port, host: config.est.host })).replace(/^http:/, 'https:');
    return `${address}/.well-known/est`;
  }

  async function startMqtt(logger: FastifyBaseLogger): Promise<string | null> {
    if (!config.mqttRenewal || !config.brokerAdmin) return null;
    mqtt = await startMqttRenewal({ connection: await readBrokerAdmin(config.brokerAdmin), renewal, logger: logger.child({ component: 'mqtt-renewal' }) });
    return `${config.brokerAdmin.url} as ${config.brokerAdmin.username}`;
  }

  return {
    renewal,
    async start(logger) {
      return { est: await startEst(logger), mqtt: await startMqtt(logger) };
    },
    estServer: () => est,
    async close() {
      await mqtt?.close();
      await est?.close();
    },
  };
}
