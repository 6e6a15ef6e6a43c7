import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import cookie from '@fastify/cookie';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Registry } from 'prom-client';
import type { SessionStore } from '../auth/sessions.ts';
import type { TokenVerifier } from '../auth/token-verifier.ts';
import type { HttpLimits } from '../config.ts';
import { authenticateBrokerAgent, authorizeScope, createAuthenticate } from './auth-hooks.ts';
import { metricsAuthorized } from './metrics-auth.ts';
import { installHttpMetrics } from './http-metrics.ts';
import { AppError } from '../domain/errors.ts';
import { recordRoutes } from './route-table.ts';
import { createLimitedServer } from '../support/listener.ts';
import { frameworkErrors, installErrorHandler } from '../support/problem.ts';
import { sharedSchemas } from './response-schemas.ts';
import { sessionRoutes } from './routes/session.ts';
import { installValidators, lazySerializers } from './validation.ts';

export interface HttpAppOptions {
  verifier: TokenVerifier;
  /** Tenant-scoped route plugins: mounted under /api/v1/customer and /customer, authenticated. */
  customer: FastifyPluginAsync[];
  /** Cross-tenant route plugins: /api/v1/operator and /operator, authenticated. */
  operator: FastifyPluginAsync[];
  /** Broker agents (role broker-agent, bearer only): `pki` under /pki (the CRL bundle), `api` under /api/v1/broker-agent. */
  brokerAgent?: { pki: FastifyPluginAsync[]; api: FastifyPluginAsync[] };
  /** Unauthenticated plugins mounted at the root (health, /pki, the web UI). */
  public: FastifyPluginAsync[];
  metrics: Registry;
  /** METRICS_TOKEN: /metrics needs `Authorization: Bearer <it>`. */
  metricsToken?: string | null;
  sessions: SessionStore;
  /** The process logger (request lines); none: no request logging. */
  logger?: FastifyBaseLogger;
  /** Session cookies get Secure (PUBLIC_BASE_URL is https). */
  secureCookies?: boolean;
  /** Slow-client limits of the listening server. */
  limits: HttpLimits;
}

/**
 * The API documentation's Content-Security-Policy: Swagger UI loads only its own scripts and
 * styles from /docs/static (no inline script), fetches /docs/json, and shows its logo as a data:
 * image; nothing may frame it, no plugins, no foreign origin (no validator badge). The one inline
 * <style> element swagger-ui-bundle.js inserts is allowed by its hash, not by 'unsafe-inline'
 * (test/web-console.test.ts renders the page in Chromium and fails on any violation, e.g. after
 * an upgrade changed that element).
 */
const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

export async function buildHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: 256 * 1024,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    ajv: { customOptions: { coerceTypes: false } },
    schemaController: { compilersFactory: { buildSerializer: lazySerializers() } },
    frameworkErrors,
    // Slow clients (slowloris: trickled headers or bodies) are cut off by these limits, and
    // connections beyond the cap are closed at once, so they cannot starve other clients.
    serverFactory: (handler) => createLimitedServer(options.limits, handler),
  });
  const routes = recordRoutes(app);
  // Every answer is what its Content-Type says (no MIME sniffing of JSON, PEM or the docs' assets).
  app.addHook('onRequest', async (_request, reply) => void reply.header('x-content-type-options', 'nosniff'));
  installHttpMetrics(app, options.metrics);
  installValidators(app);
  installErrorHandler(app);

  // An empty body with Content-Type: application/json means "no body" (the seed's bare revoke call).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      (e as Error & { statusCode?: number }).statusCode = 400;
      done(e as Error, undefined);
    }
  });

  // The response entities (Certificate, Device, Alert, ...): serializers and the OpenAPI
  // document's components.schemas, named by their $id.
  for (const schema of sharedSchemas) app.addSchema(schema);

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      info: { title: 'certfleet', version: '1', description: 'Certificate lifecycle for IoT fleets' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: DOCS_CSP,
  });

  // Authentication and authorization of a whole route scope happen here, in its hooks;
  // handlers only read request.principal (customerActor, operatorPrincipal).
  const authenticate = createAuthenticate(options.verifier, options.sessions);
  // The first prefix is the documented one; the others are aliases, served but hidden from OpenAPI
  // so that each operation is listed once.
  const mount = (plugins: FastifyPluginAsync[], access: 'customer' | 'operator', prefixes: string[]) => {
    for (const [index, prefix] of prefixes.entries()) {
      routes.scope(prefix, access);
      app.register(
        async (scope) => {
          scope.addHook('onRequest', authenticate);
          scope.addHook('onRequest', authorizeScope(access));
          if (index > 0) scope.addHook('onRoute', (route) => void (route.schema = { ...route.schema, hide: true }));
          for (const plugin of plugins) await scope.register(plugin);
        },
        { prefix },
      );
    }
  };
  mount(options.customer, 'customer', ['/api/v1/customer', '/customer']);
  mount(options.operator, 'operator', ['/api/v1/operator', '/operator']);
  for (const [prefix, plugins] of [
    ['/pki', options.brokerAgent?.pki ?? []],
    ['/api/v1/broker-agent', options.brokerAgent?.api ?? []],
  ] as const) {
    if (plugins.length === 0) continue;
    routes.scope(prefix, 'broker-agent');
    app.register(
      async (scope) => {
        scope.addHook('onRequest', authenticateBrokerAgent(options.verifier));
        for (const plugin of plugins) await scope.register(plugin);
      },
      { prefix },
    );
  }
  routes.scope('/auth', 'session');
  app.register(sessionRoutes(options.verifier, options.sessions, { secureCookies: options.secureCookies ?? false }), { prefix: '/auth' });
  for (const plugin of options.public) app.register(plugin);

  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    if (!metricsAuthorized(request.headers.authorization, options.metricsToken ?? null)) {
      throw new AppError('UNAUTHENTICATED', 'metrics need Authorization: Bearer <METRICS_TOKEN>');
    }
    return reply.type(options.metrics.contentType).send(await options.metrics.metrics());
  });
  await app.ready();
  return app;
}
