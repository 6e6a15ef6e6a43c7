import { readFile } from 'node:fs/promises';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { AppDeps } from '../app/deps.ts';
import type { UseCases } from '../app/use-cases.ts';
import { readBrokerAdmin } from '../broker/admin-credentials.ts';
import { estListenerConfig, type Config, type HttpLimits } from '../config.ts';
import { createDeviceRenewal, type DeviceRenewal } from '../renewal/device-renewal.ts';
import { buildEstServer, estTlsOptions } from '../renewal/est-server.ts';
import { createClaimOnboarding, type ClaimOnboarding } from '../renewal/claim-onboarding.ts';
import { createClaimStore } from '../storage/repos/claim-repo.ts';
import { createApprovalClient } from '../webhooks/approval-client.ts';
import type { SecretSealer } from '../app/ports.ts';
import type { Server as TlsServer } from 'node:tls';
import { startMqttRenewal, type MqttRenewal } from '../renewal/mqtt-renewal.ts';
import { startMqttProvisioning, type MqttProvisioning } from '../renewal/mqtt-provisioning.ts';
import { createClaimCaFileSync, type ClaimCaFileSync } from '../broker/claim-ca-file.ts';
import { createAdmission, type Admission } from '../renewal/admission.ts';
import type { Database } from '../storage/database.ts';
import { createRenewalStore } from '../storage/repos/renewal-repo.ts';

export interface RenewalWiring {
  renewal: DeviceRenewal;
  /** Factory (claim) onboarding: claim CAs, provisioning policy, EST enrollment with a claim certificate. */
  claims: ClaimOnboarding;
  /** One admission for EST and MQTT renewals and enrollments (RENEWAL_MAX_CONCURRENT, RENEWAL_QUEUE_PER_TENANT, RENEWAL_QUEUE_WAIT_MS). */
  admission: Admission;
  /** Starts the EST listener (EST_PORT), the MQTT renewal responder (MQTT_RENEWAL) and the MQTT provisioning responder (MQTT_PROVISIONING); one line each, for the banner. */
  start(logger: FastifyBaseLogger): Promise<{ est: string | null; mqtt: string | null; provisioning: string | null }>;
  /** The provisioning listener's capath (BROKER_CLAIM_CA_PATH), once started; null when not kept. */
  claimCaFile(): ClaimCaFileSync | null;
  /** The EST listener once started (null before, or when EST_PORT is unset). */
  estServer(): FastifyInstance | null;
  close(): Promise<void>;
}

/** The EST listener's accept queue: as many pending connections as it may serve, at least Node's default. */
export const estListenBacklog = (maxConnections: number) => Math.max(511, Math.min(maxConnections, 65_535));

/** `estLimits`: the EST listener's timeouts and its connection cap within the descriptor budget. */
/** How often a replica re-reads every tenant's claim CAs for the EST listener's TLS certificate request (another replica may have added one). */
const CLAIM_CA_REFRESH_MS = 60_000;

/**
 * `trustedCasPem`: every CA a device must trust (staged, active, retiring; the CRL publication's
 * trust set), PEM: what EST /cacerts answers and what the EST listener accepts as client
 * certificate issuers (a device of a staged or retiring CA re-enrolls too). Default: the issuing CA.
 */
export function createRenewalWiring(
  config: Config,
  deps: AppDeps,
  useCases: UseCases,
  db: Database,
  estLimits: HttpLimits,
  secrets: SecretSealer,
  trustedCasPem?: () => string,
  /** The CA directory: when its set changes (a CA staged, activated, retired), the EST listener's trusted CAs are re-read at once, not at the next periodic refresh. */
  cas?: { onChange(listener: () => void): () => void },
): RenewalWiring {
  const devicePem = trustedCasPem ?? (() => deps.authority.trustedCaPems());
  const renewal = createDeviceRenewal({
    store: createRenewalStore(db),
    useCases,
    authority: deps.authority,
    keys: deps.keys,
    clock: deps.clock,
  });
  let est: FastifyInstance | null = null;
  let refreshTls: (() => Promise<void>) | null = null;
  let unsubscribeCas: (() => void) | null = null;
  let refreshTimer: NodeJS.Timeout | null = null;
  const claimStore = createClaimStore(db);
  const claims = createClaimOnboarding({
    store: claimStore,
    useCases,
    authority: deps.authority,
    keys: deps.keys,
    clock: deps.clock,
    secrets,
    approve: createApprovalClient({ allowPrivateNetworks: config.webhookAllowPrivateNetworks }),
    settings: { webhookAllowPrivateNetworks: config.webhookAllowPrivateNetworks },
    onClaimCasChanged: () => {
      void refreshTls?.().catch(() => undefined);
      void claimCaFile?.sync().catch(() => undefined);
    },
  });
  let mqtt: MqttRenewal | null = null;
  let provisioning: MqttProvisioning | null = null;
  let claimCaFile: ClaimCaFileSync | null = null;
  let claimCaTimer: NodeJS.Timeout | null = null;
  const admission = createAdmission(config.renewalAdmission);

  async function startEst(logger: FastifyBaseLogger): Promise<string | null> {
    const listener = estListenerConfig(config);
    if (!config.est || !listener) return null;
    const [tlsCertPem, tlsKeyPem] = await Promise.all([readFile(listener.tlsCertPath, 'utf8'), readFile(listener.tlsKeyPath, 'utf8')]);
    est = await buildEstServer({
      renewal,
      tlsCertPem,
      tlsKeyPem,
      deviceCaPem: devicePem,
      limits: estLimits,
      handshakeTimeoutMs: config.est.handshakeTimeoutMs,
      logger: logger.child({ listener: 'est' }),
      claims,
      admission,
    });
    // The TLS certificate request names the claim CAs too (clients that pick a certificate by issuer find theirs).
    const tlsIdentity = { tlsCertPem, tlsKeyPem, deviceCaPem: devicePem };
    const server = est.server as unknown as TlsServer;
    refreshTls = async () => server.setSecureContext(estTlsOptions(tlsIdentity, await claimStore.allClaimCaPems()));
    await refreshTls().catch((e: unknown) => logger.warn({ err: e }, 'could not read the claim CAs for the EST listener'));
    refreshTimer = setInterval(() => void refreshTls?.().catch(() => undefined), CLAIM_CA_REFRESH_MS);
    unsubscribeCas = cas?.onChange(() => void refreshTls?.().catch((e: unknown) => logger.warn({ err: e }, 'could not refresh the EST listener\'s trusted CAs'))) ?? null;
    refreshTimer.unref();
    // Fastify names the address http://: it does not know that the server it was given speaks TLS.
    // A storm's connections arrive in bursts while the event loop signs and handshakes: the kernel's
    // accept queue holds up to the connection cap (Node's default, 511, dropped the SYNs of a burst,
    // which devices saw as connect timeouts); the kernel still caps it at net.core.somaxconn.
    const address = (await est.listen({ port: config.est.port, host: config.est.host, backlog: estListenBacklog(estLimits.maxConnections) })).replace(/^http:/, 'https:');
    return `${address}/.well-known/est`;
  }

  async function startMqtt(logger: FastifyBaseLogger): Promise<string | null> {
    if (!config.mqttRenewal || !config.brokerAdmin) return null;
    mqtt = await startMqttRenewal({ connection: await readBrokerAdmin(config.brokerAdmin), renewal, logger: logger.child({ component: 'mqtt-renewal' }), admission });
    return `${config.brokerAdmin.url} as ${config.brokerAdmin.username}`;
  }

  /** MQTT provisioning with claim certificates: the responder, and the provisioning listener's cafile. */
  async function startProvisioning(logger: FastifyBaseLogger): Promise<string | null> {
    if (config.brokerClaimCaPath) {
      claimCaFile = createClaimCaFileSync({
        path: config.brokerClaimCaPath,
        claimCaPems: () => claimStore.allClaimCaPems(),
        logger: logger.child({ component: 'claim-ca-file' }),
      });
      await claimCaFile.sync().catch(() => undefined);
      claimCaTimer = setInterval(() => void claimCaFile?.sync().catch(() => undefined), CLAIM_CA_REFRESH_MS);
      claimCaTimer.unref();
    }
    if (!config.mqttProvisioning || !config.brokerAdmin) return null;
    provisioning = await startMqttProvisioning({
      connection: await readBrokerAdmin(config.brokerAdmin),
      claims,
      now: () => deps.clock.now(),
      logger: logger.child({ component: 'mqtt-provisioning' }),
      admission,
    });
    return `${config.brokerAdmin.url} as ${config.brokerAdmin.username} (certfleet/provision/+/request)`;
  }

  return {
    renewal,
    claims,
    admission,
    async start(logger) {
      return { est: await startEst(logger), mqtt: await startMqtt(logger), provisioning: await startProvisioning(logger) };
    },
    estServer: () => est,
    claimCaFile: () => claimCaFile,
    async close() {
      if (claimCaTimer) clearInterval(claimCaTimer);
      await provisioning?.close();
      await claimCaFile?.idle();
      if (refreshTimer) clearInterval(refreshTimer);
      unsubscribeCas?.();
      await mqtt?.close();
      await est?.close();
    },
  };
}
