import type { FastifyInstance } from 'fastify';
import { pingDatabase, type Database } from '../../storage/database.ts';

export function healthRoutes(deps: { db: Database; caLoaded: boolean }) {
  return async (app: FastifyInstance) => {
    app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
    app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
      try {
        await pingDatabase(deps.db);
      } catch (e) {
        // The error text (host names, user names, SQL) goes to the log, never to the caller.
        request.log.error({ err: e }, 'readiness check: database unavailable');
        return reply.code(503).send({ status: 'unavailable', database: 'unavailable' });
      }
      return { status: 'ready', database: 'ok', device_ca: deps.caLoaded ? 'loaded' : 'not configured' };
    });
  };
}
