import type { FastifyInstance } from 'fastify';

const status = (properties: Record<string, unknown>) => ({ type: 'object', required: Object.keys(properties), properties }) as const;
const text = { type: 'string' } as const;

/** Hidden from the OpenAPI document, but serialized by these schemas all the same. */
const liveness = { 200: status({ status: text }) };
const readiness = { 200: status({ status: text, database: text, device_ca: text }), 503: status({ status: text, database: text }) };

/** What readiness needs: a round trip to the database (the composition root binds it). */
export interface HealthPort {
  /** Resolves when the database answers; rejects otherwise. */
  pingDatabase(): Promise<unknown>;
  caLoaded: boolean;
}

/**
 * Probes come every few seconds from Docker and Kubernetes: their request lines are written only
 * when the log level is debug or trace (at info they would flood the log); errors always.
 */
const probeLogLevel = (app: FastifyInstance): 'debug' | 'trace' | 'warn' => {
  const level = app.log.level;
  if (level === 'debug') return 'debug';
  return level === 'trace' ? 'trace' : 'warn';
};

export function healthRoutes(deps: HealthPort) {
  return async (app: FastifyInstance) => {
    const logLevel = probeLogLevel(app);
    app.get('/healthz', { logLevel, schema: { hide: true, response: liveness } }, async () => ({ status: 'ok' }));
    app.get('/readyz', { logLevel, schema: { hide: true, response: readiness } }, async (request, reply) => {
      try {
        await deps.pingDatabase();
      } catch (e) {
        // The error text (host names, user names, SQL) goes to the log, never to the caller.
        request.log.error({ err: e }, 'readiness check: database unavailable');
        return reply.code(503).send({ status: 'unavailable', database: 'unavailable' });
      }
      return { status: 'ready', database: 'ok', device_ca: deps.caLoaded ? 'loaded' : 'not configured' };
    });
  };
}
