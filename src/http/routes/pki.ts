import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CrlDocument, GetCrl } from '../../crl/crl-publisher.ts';
import { AppError } from '../../domain/errors.ts';
import { sendCacheable, sha256Hex } from '../conditional-get.ts';

export interface PkiCaDocument {
  id: string;
  status: string;
  certPem: string;
  notBefore: Date;
  getCrl: GetCrl;
}

export interface PkiRoutesDeps {
  /** The default CA's certificate (/pki/ca.pem); a function when the CA set can change. */
  caCertPem: string | null | (() => string | null);
  /** When the CA certificate became valid (its Last-Modified). */
  caNotBefore?: Date | null | (() => Date | null);
  /** Every CA published (/pki/ca/{id}.pem, /pki/ca/{id}/crl, /pki/cas.pem: the staged, active and retiring ones). */
  cas?: () => PkiCaDocument[];
  /** The latest stored CRL; absent: the CRL routes answer 503. */
  getCrl?: GetCrl;
  /** Cache-Control max-age of the CRL responses (below the refresh interval). */
  crlMaxAgeSeconds?: number;
}

/** Public PKI documents: no authentication (they are public by nature). */
const TRUSTED = new Set(['staged', 'active', 'retiring']);
/** A CA id as it appears in a URL (ca records' ids, hex key ids): anything else is a 404. */
const CA_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function pkiRoutes(deps: PkiRoutesDeps) {
  const caCertPem = () => (typeof deps.caCertPem === 'function' ? deps.caCertPem() : deps.caCertPem);
  const caNotBefore = () => (typeof deps.caNotBefore === 'function' ? deps.caNotBefore() : (deps.caNotBefore ?? null));
  const cas = () => deps.cas?.() ?? [];
  const caById = (id: string) => {
    const ca = CA_ID.test(id) ? cas().find((c) => c.id === id) : undefined;
    if (!ca) throw new AppError('NOT_FOUND', `no CA ${JSON.stringify(id.slice(0, 64))}`);
    return ca;
  };
  const sendCrl = async (request: FastifyRequest, reply: FastifyReply, crl: CrlDocument, pem: boolean) =>
    sendCacheable(request, reply, {
      etag: pem ? `${crl.sha256}-pem` : crl.sha256,
      lastModified: crl.thisUpdate,
      maxAgeSeconds: crlMaxAge,
      visibility: 'public',
      contentType: pem ? 'application/x-pem-file' : 'application/pkix-crl',
      body: pem ? crl.pem : crl.der,
    });
  const crlMaxAge = deps.crlMaxAgeSeconds ?? 300;
  const latestCrl = () => {
    if (!deps.getCrl) throw new AppError('CRL_NOT_AVAILABLE', 'this process does not serve the CRL');
    return deps.getCrl();
  };
  return async (app: FastifyInstance) => {
    app.get('/pki/ca.pem', { schema: { tags: ['pki'], summary: 'The Device CA certificate', security: [] } }, async (request, reply) => {
      const pem = caCertPem();
      if (!pem) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
      return sendCacheable(request, reply, {
        etag: sha256Hex(pem),
        lastModified: caNotBefore() ?? new Date(0),
        maxAgeSeconds: 3600,
        visibility: 'public',
        contentType: 'application/x-pem-file',
        body: pem,
      });
    });

    app.get(
      '/pki/cas.pem',
      { schema: { tags: ['pki'], summary: 'Every CA a device or broker must trust (staged, active, retiring), PEM, concatenated', security: [] } },
      async (request, reply) => {
        const list = cas().filter((c) => TRUSTED.has(c.status));
        const pem = list.length ? list.map((c) => c.certPem.trimEnd() + '\n').join('') : caCertPem();
        if (!pem) throw new AppError('CA_NOT_CONFIGURED', 'Device CA not configured');
        return sendCacheable(request, reply, {
          etag: sha256Hex(pem),
          lastModified: new Date(Math.max(0, ...list.map((c) => c.notBefore.getTime()))),
          maxAgeSeconds: 60, // a staged CA must reach brokers and devices soon
          visibility: 'public',
          contentType: 'application/x-pem-file',
          body: pem,
        });
      },
    );

    app.get<{ Params: { id: string } }>(
      '/pki/ca/:id',
      { schema: { tags: ['pki'], summary: 'One CA certificate (`/pki/ca/{id}.pem`)', security: [], params: { type: 'object', properties: { id: { type: 'string', maxLength: 200 } }, required: ['id'] } } },
      async (request, reply) => {
        const raw = request.params.id;
        if (!raw.endsWith('.pem')) throw new AppError('NOT_FOUND', 'use /pki/ca/{id}.pem or /pki/ca/{id}/crl');
        const ca = caById(raw.slice(0, -'.pem'.length));
        return sendCacheable(request, reply, {
          etag: sha256Hex(ca.certPem),
          lastModified: ca.notBefore,
          maxAgeSeconds: 3600,
          visibility: 'public',
          contentType: 'application/x-pem-file',
          body: ca.certPem,
        });
      },
    );

    app.get<{ Params: { id: string } }>(
      '/pki/ca/:id/crl',
      { schema: { tags: ['pki'], summary: "One CA's latest CRL (DER): the distribution point its certificates carry", security: [], params: { type: 'object', properties: { id: { type: 'string', maxLength: 200 } }, required: ['id'] } } },
      async (request, reply) => sendCrl(request, reply, await caById(request.params.id).getCrl(), false),
    );

    app.get<{ Params: { id: string } }>(
      '/pki/ca/:id/crl.pem',
      { schema: { tags: ['pki'], summary: "One CA's latest CRL (PEM)", security: [], params: { type: 'object', properties: { id: { type: 'string', maxLength: 200 } }, required: ['id'] } } },
      async (request, reply) => sendCrl(request, reply, await caById(request.params.id).getCrl(), true),
    );

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
