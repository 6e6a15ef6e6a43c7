import type { FastifyInstance } from 'fastify';
import type { GetCrl } from '../../crl/crl-publisher.ts';
import { AppError } from '../../domain/errors.ts';
import { sendCacheable, sha256Hex } from '../conditional-get.ts';

export interface PkiRoutesDeps {
  caCertPem: string | null;
  /** When the CA certificate became valid (its Last-Modified). */
  caNotBefore?: Date | null;
  /** The latest stored CRL; absent: the CRL routes answer 503. */
  getCrl?: GetCrl;
  /** Cache-Control max-age of the CRL responses (below the refresh interval). */
  crlMaxAgeSeconds?: number;
}

/** Public PKI documents: no authentication (they are public by nature). */
export function pkiRoutes(deps: PkiRoutesDeps) {
  const caEtag = deps.caCertPem ? sha256Hex(deps.caCertPem) : '';
  const crlMaxAge = deps.crlMaxAgeSeconds ?? 300;
  const latestCrl = () => {
    if (!deps.getCrl) throw new AppError('CRL_NOT_AVAILABLE', 'this process does not serve the CRL');
    return deps.getCrl();
  };
  return async (app: FastifyInstance) => {
    app.get('/pki/ca.pem', { schema: { tags: ['pki'], summary: 'The Device CA certificate', security: [] } }, async (request, reply) => {
      if (!deps.caCertPem) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
      return sendCacheable(request, reply, {
        etag: caEtag,
        lastModified: deps.caNotBefore ?? new Date(0),
        maxAgeSeconds: 3600,
        visibility: 'public',
        contentType: 'application/x-pem-file',
        body: deps.caCertPem,
      });
    });

    app.get(
      '/pki/crl',
      { schema: { tags: ['pki'], summary: 'The latest CRL (DER); the URL in every certificate’s CRL Distribution Point', security: [] } },
      async (request, reply) => {
        const crl = await latestCrl();
        return sendCacheable(request, reply, {
          etag: crl.sha256,
          lastModified: crl.thisUpdate,
          maxAgeSeconds: crlMaxAge,
          visibility: 'public',
          contentType: 'application/pkix-crl',
          body: crl.der,
        });
      },
    );

    app.get('/pki/crl.pem', { schema: { tags: ['pki'], summary: 'The latest CRL (PEM, X509 CRL)', security: [] } }, async (request, reply) => {
      const crl = await latestCrl();
      return sendCacheable(request, reply, {
        etag: `${crl.sha256}-pem`,
        lastModified: crl.thisUpdate,
        maxAgeSeconds: crlMaxAge,
        visibility: 'public',
        contentType: 'application/x-pem-file',
        body: crl.pem,
      });
    });
  };
}
