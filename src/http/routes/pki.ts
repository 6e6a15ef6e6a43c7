import type { FastifyInstance } from 'fastify';
import { AppError } from '../../domain/errors.ts';

/** Public PKI documents: no authentication (they are public by nature). */
export function pkiRoutes(deps: { caCertPem: string | null }) {
  return async (app: FastifyInstance) => {
    app.get('/pki/ca.pem', { schema: { tags: ['pki'], summary: 'The Device CA certificate', security: [] } }, async (_request, reply) => {
      if (!deps.caCertPem) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
      return reply.type('application/x-pem-file').header('Cache-Control', 'public, max-age=3600').send(deps.caCertPem);
    });
  };
}
