import type { FastifyInstance } from 'fastify';
import { silentLogger, type ProcessLogger } from '../support/logger.ts';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from '../config.ts';
import { SECOND_MS, systemClock, type Clock } from '../domain/clock.ts';
import { createKeySource } from '../pki/key-source.ts';
import { createKeygenPool, type KeygenPool } from '../pki/keygen-pool.ts';
import { createRateLimiter } from '../domain/rate-limit.ts';
import { createDirectoryAuthority, type CertificateAuthorityOptions } from '../pki/certificate-authority.ts';
import type { AppDeps } from '../app/deps.ts';
import type { RevocationListener } from '../app/ports.ts';
import { createUseCases, type UseCases } from '../app/use-cases.ts';
import { buildHttpApp } from '../http/app.ts';
import { customerRoutes } from '../http/routes/customer.ts';
import { customerAlertRoutes } from '../http/routes/customer-alerts.ts';
import { customerWebhookRoutes, operatorWebhookRoutes } from '../http/routes/customer-webhooks.ts';
import { customerRotationRoutes } from '../http/routes/customer-rotation.ts';
import { healthRoutes } from '../http/routes/health.ts';
import { pingDatabase } from '../storage/database.ts';
import { operatorRoutes } from '../http/routes/operator.ts';
import { operatorAlertRoutes } from '../http/routes/operator-alerts.ts';
import { customerAuditRoutes, operatorAuditRoutes } from '../http/routes/audit-events.ts';
import { customerOverviewRoutes, operatorOverviewRoutes } from '../http/routes/overview.ts';
import { authInfoRoutes } from '../http/routes/auth-info.ts';
import { webConsoleRoutes } from '../http/routes/web-console.ts';
import { createGetCrlStatus } from '../app/get-crl-status.ts';
import { registerFleetMetrics } from './fleet-metrics.ts';
import { createCrlPublication, type CrlPublication, type CrlPublicationOptions } from './crl.ts';
import { createBrokerAclPublication, type BrokerAclPublication } from './broker-acl.ts';
import type { LoadedCa } from './load-ca.ts';
import { openCaDirectory, type StoredCaDirectory } from './ca-directory.ts';
import { openStorage, type Storage } from './open-storage.ts';
import { assertTokenVerificationConfigured, tokenVerifierFor } from './token-verifier.ts';
import { createSessionStore } from './browser-sessions.ts';
import { createRenewalWiring, type RenewalWiring } from './renewal.ts';
import { createStorage } from '../storage/repositories.ts';
import { customerEnrollmentRoutes } from '../http/routes/customer-enrollment.ts';
import { customerClaimRoutes } from '../http/routes/customer-claims.ts';
import { customerBrokerGrantRoutes } from '../http/routes/customer-broker-grants.ts';
import { customerRenewalPolicyRoutes } from '../http/routes/customer-renewal-policy.ts';
import { customerSettingsRoutes } from '../http/routes/customer-settings.ts';
import { loadWebhookSecrets } from './webhook-secrets.ts';
import { currentDescriptorUsage, planConnectionCaps, type ConnectionCaps, type DescriptorUsage } from '../support/descriptor-budget.ts';
import { PG_POOL_MAX } from '../storage/pg-driver.ts';
import { createBrokerFleet, type BrokerFleet } from '../app/broker-nodes.ts';
import { registerBrokerFleetMetrics } from './broker-fleet-metrics.ts';
import { registerCaMetrics, registerCaCrlMetrics } from './ca-metrics.ts';
import { createCaManagement } from '../app/manage-cas.ts';
import { operatorCaRoutes } from '../http/routes/operator-cas.ts';
import { customerCaRoutes } from '../http/routes/customer-cas.ts';
import { brokerAgentRoutes, crlBundleRoutes, operatorBrokerNodeRoutes } from '../http/routes/broker-agent.ts';
import { renderCaScopes } from '../broker/ca-scopes.ts';
import { isTrusted } from '../crl/ca-set.ts';

export interface ServiceOverrides {
  clock?: Clock;
  storage?: Storage;
  /** The process logger (createLogger); none: the service logs nothing (tests). */
  logger?: ProcessLogger;
  revocations?: RevocationListener;
  /** This process publishes the CRL (file + broker reload). Default true; `api` passes false (PGlite always publishes). */
  publishCrl?: boolean;
  /** Test seams of the CRL publication (file system port, broker reloader, refresh timer, the CA directory). */
  crl?: Pick<CrlPublicationOptions, 'fs' | 'reloader' | 'refreshTimer' | 'legacyIssuerKeyId'>;
  /** Test seams of the issuing authority (a faulty encoder or signer). */
  authority?: Omit<CertificateAuthorityOptions, 'crlUrl'>;
  /** Test seam: the descriptor limit and usage the connection caps are planned for. */
  descriptors?: () => DescriptorUsage;
}

/** Descriptors a database driver may hold beyond those open at start: the pool and LISTEN connections (Postgres), data files (PGlite). */
const DATABASE_DESCRIPTORS = { pg: PG_POOL_MAX + 4, pglite: 64 } as const;

/** The listeners' connection caps within the process's file descriptors (src/support/descriptor-budget.ts). */
function connectionCapsFor(config: Config, storage: Storage, usage: DescriptorUsage): ConnectionCaps {
  return planConnectionCaps({
    usage,
    database: DATABASE_DESCRIPTORS[storage.driver.kind],
    reserve: config.descriptors.reserve,
    api: { cap: config.http.maxConnections, explicit: config.descriptors.apiCapSet, variable: 'HTTP_MAX_CONNECTIONS' },
    est: config.est ? { cap: config.est.maxConnections, explicit: config.descriptors.estCapSet, variable: 'EST_MAX_CONNECTIONS' } : null,
  });
}

export interface Service {
  app: FastifyInstance;
  useCases: UseCases;
  deps: AppDeps;
  storage: Storage;
  ca: LoadedCa;
  /** The CA records and their loaded keys (issue 19). */
  cas: StoredCaDirectory;
  authMode: string;
  /** Set when development tokens are in use in production mode (CERTFLEET_AUTH=development). */
  authWarning: string | null;
  metrics: Registry;
  crl: CrlPublication;
  /** The broker's acl_file (BROKER_ACL_PATH), kept in step with devices and grants. */
  brokerAcl: BrokerAclPublication;
  /** Device-initiated enrollment and renewal (EST listener, MQTT renewal topics). */
  renewal: RenewalWiring;
  /** The API's and the EST listener's connection caps, as planned within RLIMIT_NOFILE. */
  connectionCaps: ConnectionCaps;
  /** Broker nodes and their agents (reports, lag alerts, canaries). */
  brokerFleet: BrokerFleet;
  close(): Promise<void>;
}

/** The wiring root of the HTTP service (used by `serve`, `api` and the tests). */
export async function createService(config: Config, overrides: ServiceOverrides = {}): Promise<Service> {
  const clock = overrides.clock ?? systemClock;
  // Refused before any data dir, database or migration is created by a process that could not serve.
  assertTokenVerificationConfigured(config);
  const storage = overrides.storage ?? (await openStorage(config));
  let keygen: KeygenPool | null = null;
  let directory: StoredCaDirectory | null = null;
  try {
    const log0 = overrides.logger ?? silentLogger;
    directory = await openCaDirectory({ config, storage: createStorage(storage.db), db: storage.db, driver: storage.driver, clock, logger: log0 });
    const cas = directory;
    // The global scope's active CA: /pki/ca.pem, /pki/crl and the CRL publication (one CA until the publication side is per CA).
    const ca: LoadedCa = { ca: cas.defaultCa()?.ca ?? null, created: cas.configured.created, problem: cas.defaultCa() ? null : (cas.configured.problem ?? 'no active global Device CA: issuing answers 503 (certfleet ca create, then ca activate)') };
    const webhookSecrets = await loadWebhookSecrets(config);
    const metrics = new Registry();
    collectDefaultMetrics({ register: metrics, eventLoopMonitoringPrecision: 2 });
    const log = overrides.logger ?? silentLogger;
    const crl = createCrlPublication({
      config,
      storage,
      ca: ca.ca,
      // Every staged, active and retiring CA: one CRL each, the broker's crlfile and cafile (BROKER_CA_PATH) in order.
      cas,
      clock,
      metrics,
      logger: log,
      publish: overrides.publishCrl,
      ...overrides.crl,
    });
    const brokerAcl = createBrokerAclPublication({ config, storage, logger: log, publish: overrides.publishCrl, reloader: overrides.crl?.reloader });
    registerFleetMetrics(metrics, { db: storage.db, clock, tenantLabels: config.metricsTenantLabels });
    keygen = config.keygenWorkers > 0 ? createKeygenPool(config.keygenWorkers) : null;
    const deps: AppDeps = {
      storage: createStorage(storage.db),
      clock,
      authority: createDirectoryAuthority(cas, overrides.authority),
      keys: createKeySource(keygen),
      revocations: overrides.revocations ?? crl.listener,
      brokerAcl: brokerAcl.listener,
      issuanceLimit: createRateLimiter({
        perMinute: config.issuanceRatePerMinute,
        burst: config.issuanceBurst,
        now: () => performance.now(),
        what: 'certificate issuance',
      }),
      secrets: webhookSecrets.box,
      settings: { rotationGraceHours: config.rotationGraceHours, webhookAllowPrivateNetworks: config.webhookAllowPrivateNetworks },
    };
    const useCases = createUseCases(deps);
    const caManagement = createCaManagement({
      storage: deps.storage,
      clock,
      keystore: cas.keystore,
      registry: { all: () => cas.all(), isLoaded: (id) => cas.byId(id) !== null, changed: () => cas.changed() },
      crlUrlFor: (id) => `${config.publicBaseUrl}/pki/ca/${id}/crl`,
    });
    const brokerFleet = createBrokerFleet({
      storage: deps.storage,
      clock,
      useCases,
      settings: {
        lagAlertMs: config.brokerFleet.lagAlertSeconds * SECOND_MS,
        reportTimeoutMs: config.brokerFleet.reportTimeoutSeconds * SECOND_MS,
        issuerKeyIds: () => crl.issuerKeyIds(),
      },
    });
    registerBrokerFleetMetrics(metrics, brokerFleet);
    // Every CA record that is not retired or revoked (the alerts watch the same set).
    registerCaMetrics(metrics, () => cas.all().filter((r) => r.status !== 'retired' && r.status !== 'revoked').map((r) => ({ id: r.issuerKeyId, notAfter: r.notAfter })));
    registerCaCrlMetrics(metrics, crl);
    const connectionCaps = connectionCapsFor(config, storage, (overrides.descriptors ?? currentDescriptorUsage)());
    const renewal = createRenewalWiring(config, deps, useCases, storage.db, { ...config.http, maxConnections: connectionCaps.est ?? 1 }, webhookSecrets.box, undefined, cas);
    const { verifier, mode, warning: authWarning } = await tokenVerifierFor(config);
    const crlStatus = createGetCrlStatus({ storage: deps.storage, issuerKeyId: crl.issuerKeyId });
    const sessions = createSessionStore({ db: storage.db, clock });
    const signIn = { oidc: config.oidc && config.consoleOidc ? { issuer: config.oidc.issuer, client_id: config.consoleOidc.clientId, scope: config.consoleOidc.scope } : null };
    const app = await buildHttpApp({
      verifier,
      customer: [
        customerRoutes(useCases),
        customerRotationRoutes(useCases),
        crl.routes.customer,
        customerAlertRoutes(useCases),
        customerWebhookRoutes(useCases),
        customerEnrollmentRoutes(renewal.renewal),
        customerClaimRoutes(renewal.claims),
        customerBrokerGrantRoutes(useCases),
        customerRenewalPolicyRoutes(useCases),
        customerSettingsRoutes(useCases),
        customerAuditRoutes(useCases),
        customerOverviewRoutes(useCases, crlStatus),
        customerCaRoutes(caManagement),
      ],
      operator: [
        operatorRoutes(useCases),
        operatorAlertRoutes(useCases),
        operatorWebhookRoutes(useCases),
        operatorAuditRoutes(useCases),
        operatorOverviewRoutes(useCases, crlStatus),
        operatorBrokerNodeRoutes(brokerFleet),
        operatorCaRoutes(caManagement),
      ],
      brokerAgent: {
        pki: [
          crlBundleRoutes(crl.bundle, () => {
            const trusted = crl.cas().filter(isTrusted);
            return trusted.length ? renderCaScopes(trusted.map((c) => ({ certPem: c.certPem, tenantId: c.tenantId }))) : null;
          }),
        ],
        api: [brokerAgentRoutes(brokerFleet)],
      },
      public: [
        healthRoutes({ pingDatabase: () => pingDatabase(storage.db), caLoaded: ca.ca !== null }),
        crl.routes.pki,
        async (scope) => scope.register(authInfoRoutes(verifier, sessions, signIn), { prefix: '/auth' }),
        webConsoleRoutes({ connectOrigins: signIn.oidc ? [new URL(signIn.oidc.issuer).origin] : [] }),
      ],
      metrics,
      metricsToken: config.metricsToken,
      sessions,
      secureCookies: new URL(config.publicBaseUrl).protocol === 'https:',
      limits: { ...config.http, maxConnections: connectionCaps.api },
      logger: overrides.logger,
    });
    if (authWarning) log.warn({ event: 'development_auth_in_production' }, authWarning);
    if (webhookSecrets.warning) log.warn({}, webhookSecrets.warning);
    try {
      await crl.start();
      await brokerAcl.start();
    } catch (e) {
      await brokerAcl.stop();
      await crl.stop();
      await app.close();
      throw e;
    }
    return {
      app,
      useCases,
      deps,
      storage,
      ca,
      cas,
      authMode: mode,
      authWarning,
      metrics,
      crl,
      brokerAcl,
      renewal,
      connectionCaps,
      brokerFleet,
      async close() {
        await renewal.close();
        await brokerAcl.stop();
        await crl.stop();
        await app.close();
        await keygen?.close();
        await cas.close();
        if (!overrides.storage) await storage.close();
      },
    };
  } catch (e) {
    await keygen?.close();
    await directory?.close();
    if (!overrides.storage) await storage.close();
    throw e;
  }
}
