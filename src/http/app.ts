import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify';
import cookie from '@fastify/cookie';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { Registry } from 'prom-client';
import type { TokenVerifier } from '../auth/token-verifier.ts';
import { createAuthenticate } from './auth-hooks.ts';
import { frameworkErrors, installErrorHandler } from './problem.ts';
import { sessionRoutes } from './routes/session.ts';
import { installValidators } from './validation.ts';

export interface HttpAppOptions {
  verifier: TokenVerifier;
  /** Tenant-scoped route plugins: mounted under /api/v1/customer and /customer, authenticated. */
  customer: FastifyPluginAsync[];
  /** Cross-tenant route plugins: /api/v1/operator and /operator, authenticated. */
  operator: FastifyPluginAsync[];
  /** Unauthenticated plugins mounted at the root (health, /pki, the web UI). */
  public: FastifyPluginAsync[];
  metrics: Registry;
  /** The process logger (request lines); none: no request logging. */
  logger?: FastifyBaseLogger;
  secureCookies?: boolean;
}

export async function buildHttpApp(options: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: 256 * 1024,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    ajv: { customOptions: { coerceTypes: false } },
    frameworkErrors,
  });
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

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      info: { title: 'certfleet', version: '1', description: 'Certificate lifecycle for IoT fleets' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  const authenticate = createAuthenticate(options.verifier);
  // The first prefix is the documented one; the others are aliases, served but hidden from OpenAPI
  // so that each operation is listed once.
  const mount = (plugins: FastifyPluginAsync[], prefixes: string[]) => {
    for (const [index, prefix] of prefixes.entries()) {
      app.register(
        async (scope) => {
          scope.addHook('onRequest', authenticate);
          if (index > 0) scope.addHook('onRoute', (route) => void (route.schema = { ...route.schema, hide: true }));
          for (const plugin of plugins) await scope.register(plugin);
        },
        { prefix },
      );
    }
  };
  mount(options.customer, ['/api/v1/customer', '/customer']);
  mount(options.operator, ['/api/v1/operator', '/operator']);
  app.register(sessionRoutes(options.verifier, { secureCookies: options.secureCookies ?? false }), { prefix: '/auth' });
  for (const plugin of options.public) app.register(plugin);

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(options.metrics.contentType).send(await options.metrics.metrics()),
  );
  await app.ready();
  return app;
}
