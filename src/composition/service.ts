import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import { keySource } from '../pki/key-source.ts';
import { createCertificateAuthority } from '../pki/certificate-authority.ts';
import type { AppDeps } from '../app/deps.ts';
import type { RevocationListener } from '../app/ports.ts';
import { createUseCases, type UseCases } from '../app/use-cases.ts';
import { buildHttpApp } from '../http/app.ts';
import { customerRoutes } from '../http/routes/customer.ts';
import { customerAlertRoutes } from '../http/routes/customer-alerts.ts';
import { customerWebhookRoutes } from '../http/routes/customer-webhooks.ts';
import { customerRotationRoutes } from '../http/routes/customer-rotation.ts';
import { healthRoutes } from '../http/routes/health.ts';
import { operatorRoutes } from '../http/routes/operator.ts';
import { operatorAlertRoutes } from '../http/routes/operator-alerts.ts';
import { registerFleetMetrics } from './fleet-metrics.ts';
import { createCrlPublication, type CrlPublication, type CrlPublicationOptions } from './crl.ts';
import { loadCaForConfig, type LoadedCa } from './load-ca.ts';
import { openStorage, type Storage } from './open-storage.ts';
import { tokenVerifierFor } from './token-verifier.ts';
import { createSessionStore } from './browser-sessions.ts';
import { createRenewalWiring, type RenewalWiring } from './renewal.ts';
import { customerEnrollmentRoutes } from '../http/routes/customer-enrollment.ts';
import { loadWebhookSecrets } from './webhook-secrets.ts';

export interface ServiceOverrides {
  clock?: Clock;
  storage?: Storage;
  logger?: FastifyServerOptions['logger'];
  revocations?: RevocationListener;
  /** This process publishes the CRL (file + broker reload). Default true; `api` passes false (PGlite always publishes). */
  publishCrl?: boolean;
  /** Test seams of the CRL publication (file system port, broker reloader, refresh timer). */
  crl?: Pick<CrlPublicationOptions, 'fs' | 'reloader' | 'refreshTimer'>;
}

export interface Service {
  app: FastifyInstance;
  useCases: UseCases;
  deps: AppDeps;
  storage: Storage;
  ca: LoadedCa;
  authMode: string;
  /** Set when development tokens are in use in production mode (CERTFLEET_AUTH=development). */
  authWarning: string | null;
  metrics: Registry;
  crl: CrlPublication;
  /** Device-initiated enrollment and renewal (EST listener, MQTT renewal topics). */
  renewal: RenewalWiring;
  close(): Promise<void>;
}

/** The wiring root of the HTTP service (used by `serve`, `api` and the tests). */
export async function createService(config: Config, overrides: ServiceOverrides = {}): Promise<Service> {
  const clock = overrides.clock ?? systemClock;
  const storage = overrides.storage ?? (await openStorage(config));
  try {
    const ca = await loadCaForConfig(config, clock);
    const webhookSecrets = await loadWebhookSecrets(config);
    const metrics = new Registry();
    collectDefaultMetrics({ register: metrics, eventLoopMonitoringPrecision: 2 });
    // The CRL publisher logs through the HTTP app's logger once it exists.
    let log: FastifyInstance['log'] | null = null;
    const crl = createCrlPublication({
      config,
      storage,
      ca: ca.ca,
      clock,
      metrics,
      logger: {
        info: (obj, msg) => log?.info(obj, msg),
        warn: (obj, msg) => log?.warn(obj, msg),
        error: (obj, msg) => log?.error(obj, msg),
      },
      publish: overrides.publishCrl,
      ...overrides.crl,
    });
    registerFleetMetrics(metrics, { db: storage.db, clock, tenantLabels: config.metricsTenantLabels });
    const deps: AppDeps = {
      db: storage.db,
      clock,
      authority: createCertificateAuthority(ca.ca, { crlUrl: crl.distributionPointUrl }),
      keys: keySource,
      revocations: overrides.revocations ?? crl.listener,
      secrets: webhookSecrets.box,
      settings: { rotationGraceHours: config.rotationGraceHours, webhookAllowPrivateNetworks: config.webhookAllowPrivateNetworks },
    };
    const useCases = createUseCases(deps);
    const renewal = createRenewalWiring(config, deps, useCases);
    const { verifier, mode, warning: authWarning } = await tokenVerifierFor(config);
    const app = await buildHttpApp({
      verifier,
      customer: [customerRoutes(useCases), customerRotationRoutes(useCases), crl.routes.customer, customerAlertRoutes(useCases), customerWebhookRoutes(useCases), customerEnrollmentRoutes(renewal.renewal)],
      operator: [operatorRoutes(useCases), operatorAlertRoutes(useCases)],
      public: [healthRoutes({ db: storage.db, caLoaded: ca.ca !== null }), crl.routes.pki],
      metrics,
      metricsToken: config.metricsToken,
      sessions: createSessionStore({ db: storage.db, clock }),
      secureCookies: new URL(config.publicBaseUrl).protocol === 'https:',
      limits: config.http,
      logger: overrides.logger,
    });
    log = app.log;
    if (authWarning) app.log.warn(authWarning);
    if (webhookSecrets.warning) app.log.warn(webhookSecrets.warning);
    try {
      await crl.start();
    } catch (e) {
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
      authMode: mode,
      authWarning,
      metrics,
      crl,
      renewal,
      async close() {
        await renewal.close();
        await crl.stop();
        await app.close();
        if (!overrides.storage) await storage.close();
      },
    };
  } catch (e) {
    if (!overrides.storage) await storage.close();
    throw e;
  }
}
