import type { FastifyInstance } from 'fastify';
import type { GetCrl } from '../../crl/crl-publisher.ts';
import { customerActor } from '../auth-hooks.ts';
import { sendCacheable } from '../conditional-get.ts';

/**
 * GET /customer/crl (the seed's endpoint): the latest stored CRL as PEM, as an attachment. It
 * lists every tenant's revocations (a CRL is one public document per CA); nothing is signed
 * per request. Registered next to customerRoutes under /api/v1/customer and /customer.
 */
export function customerCrlRoutes(getCrl: GetCrl, options: { maxAgeSeconds?: number } = {}) {
  return async (app: FastifyInstance) => {
    app.get(
      '/crl',
      { schema: { tags: ['certificates'], summary: 'Download the CRL (PEM, all tenants’ revocations)' } },
      async (request, reply) => {
        customerActor(request);
        const crl = await getCrl();
        return sendCacheable(request, reply, {
          etag: `${crl.sha256}-pem`,
          lastModified: crl.thisUpdate,
          maxAgeSeconds: options.maxAgeSeconds ?? 300,
          visibility: 'private',
          contentType: 'application/x-pem-file',
          body: crl.pem,
          attachment: 'device-crl.pem',
        });
      },
    );
  };
}
