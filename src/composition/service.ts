import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from '../config.ts';
import { systemClock, type Clock } from '../domain/clock.ts';
import { keySource } from '../pki/key-source.ts';
import { createCertificateAuthority } from '../pki/certificate-authority.ts';
import type { AppDeps } from '../app/deps.ts';
import { noRevocationListener, type RevocationListener } from '../app/ports.ts';
import { createUseCases, type UseCases } from '../app/use-cases.ts';
import { buildHttpApp } from '../http/app.ts';
import { customerRoutes } from '../http/routes/customer.ts';
import { customerAlertRoutes } from '../http/routes/customer-alerts.ts';
import { customerWebhookRoutes } from '../http/routes/customer-webhooks.ts';
import { customerRotationRoutes } from '../http/routes/customer-rotation.ts';
import { healthRoutes } from '../http/routes/health.ts';
import { operatorRoutes } from '../http/routes/operator.ts';
import { operatorAlertRoutes } from '../http/routes/operator-alerts.ts';
import { pkiRoutes } from '../http/routes/pki.ts';
import { registerFleetMetrics } from './fleet-metrics.ts';
import { loadCaForConfig, type LoadedCa } from './load-ca.ts';
import { openStorage, type Storage } from './open-storage.ts';
import { tokenVerifierFor } from './token-verifier.ts';

export interface ServiceOverrides {
  clock?: Clock;
  storage?: Storage;
  logger?: FastifyServerOptions['logger'];
  revocations?: RevocationListener;
}

export interface Service {
  app: FastifyInstance;
  useCases: UseCases;
  deps: AppDeps;
  storage: Storage;
  ca: LoadedCa;
  authMode: string;
  metrics: Registry;
  close(): Promise<void>;
}

/** The wiring root of the HTTP service (used by `serve`, `api` and the tests). */
export async function createService(config: Config, overrides: ServiceOverrides = {}): Promise<Service> {
  const clock = overrides.clock ?? systemClock;
  const storage = overrides.storage ?? (await openStorage(config));
  try {
    const ca = await loadCaForConfig(config, clock);
    const metrics = new Registry();
    collectDefaultMetrics({ register: metrics, eventLoopMonitoringPrecision: 2 });
    registerFleetMetrics(metrics, { db: storage.db, clock });
    const deps: AppDeps = {
      db: storage.db,
      clock,
      authority: createCertificateAuthority(ca.ca, { crlUrl: `${config.publicBaseUrl}/pki/crl` }),
      keys: keySource,
      revocations: overrides.revocations ?? noRevocationListener,
      settings: { rotationGraceHours: config.rotationGraceHours },
    };
    const useCases = createUseCases(deps);
    const { verifier, mode } = await tokenVerifierFor(config);
    const app = await buildHttpApp({
      verifier,
      customer: [customerRoutes(useCases), customerRotationRoutes(useCases), customerAlertRoutes(useCases), customerWebhookRoutes(useCases)],
      operator: [operatorRoutes(useCases), operatorAlertRoutes(useCases)],
      public: [healthRoutes({ db: storage.db, caLoaded: ca.ca !== null }), pkiRoutes({ caCertPem: ca.ca?.certPem ?? null })],
      metrics,
      logger: overrides.logger,
    });
    return {
      app,
      useCases,
      deps,
      storage,
      ca,
      authMode: mode,
      metrics,
      async close() {
        await app.close();
        if (!overrides.storage) await storage.close();
      },
    };
  } catch (e) {
    if (!overrides.storage) await storage.close();
    throw e;
  }
}
