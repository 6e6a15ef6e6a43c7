/**
 * EST (RFC 7030) on a TLS listener of its own: /cacerts, /simplereenroll authenticated by the
 * device's current certificate (TLS client certificate, checked against the Device CA by TLS and
 * against certfleet's records: ACTIVE, unrevoked, unexpired), and /simpleenroll for a first
 * enrollment with a one-time token (HTTP Basic, username tenant/device). Requests are base64
 * PKCS#10, answers base64 certs-only PKCS#7, so curl and openssl work as in the RFC's examples.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Server } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { HttpLimits } from '../config.ts';
import { createLimitedTlsServer } from '../support/listener.ts';
import { AppError } from '../domain/errors.ts';
import { installErrorHandler } from '../support/problem.ts';
import { PemError, pemBlocks } from '../pki/pem.ts';
import { pkcs7CertsOnly } from '../pki/pkcs7.ts';
import type { AuthenticatedDevice } from './device-identity.ts';
import { csrPemOf, type DeviceRenewal } from './device-renewal.ts';
import type { ClaimOnboarding } from './claim-onboarding.ts';
import { unlimitedAdmission, type Admission } from './admission.ts';

export interface EstServerOptions {
  renewal: DeviceRenewal;
  /** TLS identity of the listener (e.g. the broker's server certificate from broker-config). */
  tlsCertPem: string;
  tlsKeyPem: string;
  /** Client certificates must chain to the Device CA. */
  deviceCaPem: () => string;
  /** Head, request and keep-alive timeouts and the connection cap (the API's timeouts, EST's own cap). */
  limits: HttpLimits;
  /** A connection whose TLS handshake has not completed by then is closed (idle, or a trickled ClientHello). */
  handshakeTimeoutMs: number;
  logger?: FastifyBaseLogger;
  /** Factory onboarding: POST /.well-known/est/<tenant>/simpleenroll with a claim certificate as TLS client certificate. */
  claims?: ClaimOnboarding;
  /** Renewals and enrollments wait their tenant's turn here; saturated: 503 SERVICE_SATURATED with Retry-After. */
  admission?: Admission;
}

/** The listener's TLS options: client certificates are requested (never required) from the Device CA and from `claimCaPems` (a hint; certfleet checks every chain itself). */
export function estTlsOptions(options: Pick<EstServerOptions, 'tlsCertPem' | 'tlsKeyPem' | 'deviceCaPem'>, claimCaPems: string[] = []) {
  return {
    cert: options.tlsCertPem,
    key: options.tlsKeyPem,
    ca: [options.deviceCaPem(), ...claimCaPems],
    requestCert: true,
    // Refusals are answered in HTTP (problem+json) so the device learns why; no certificate
    // is ever issued to a connection whose client certificate TLS did not verify.
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2' as const,
  };
}

const PKCS7_TYPE = 'application/pkcs7-mime; smime-type=certs-only';
const MAX_BODY = 64 * 1024;

function base64Lines(der: Uint8Array): string {
  return `${Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\r\n')}`;
}

/** The body as DER: base64 (RFC 7030), tolerating PEM armour and raw DER from lenient clients. */
function csrDer(body: Buffer): Buffer {
  if (body.length > 0 && body[0] === 0x30) return body;
  const text = body.toString('latin1');
  let pem: Buffer | undefined;
  try {
    pem = pemBlocks(text, 'CERTIFICATE REQUEST')[0] ?? pemBlocks(text, 'NEW CERTIFICATE REQUEST')[0];
  } catch (error) {
    if (error instanceof PemError) throw new AppError('INVALID_CSR', error.message);
    throw error;
  }
  if (pem) return pem;
  const compact = text.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw new AppError('INVALID_CSR', 'the body is not a base64 PKCS#10 request');
  return Buffer.from(compact, 'base64');
}

function basicCredentials(request: FastifyRequest): { username: string; password: string } | null {
  const header = request.headers.authorization;
  if (!header?.startsWith('Basic ')) return null;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export async function buildEstServer(options: EstServerOptions): Promise<FastifyInstance> {
  const { renewal } = options;
  const admission = options.admission ?? unlimitedAdmission;
  /** Runs a renewal or enrollment in its tenant's turn; a request whose connection closed meanwhile is dropped unrun. */
  const admitted = <T>(request: FastifyRequest, tenantId: string, work: () => Promise<T>) => admission.run(tenantId, work, () => request.raw.socket.destroyed);
  /** The tenant named by the TLS client certificate's CN (tenant/device), '' when none: only the queue it waits in. */
  const peerTenant = (request: FastifyRequest) => {
    const cn = (request.raw.socket as TLSSocket).getPeerCertificate(false)?.subject?.CN;
    return typeof cn === 'string' ? (cn.split('/')[0] ?? '') : '';
  };
  const tls = estTlsOptions(options);
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: MAX_BODY,
    // The same slow-client limits as the API (src/http/listener.ts), plus the TLS handshake timeout.
    serverFactory: (handler) => createLimitedTlsServer(options.limits, { ...tls, handshakeTimeoutMs: options.handshakeTimeoutMs }, handler) as unknown as Server,
  });
  installErrorHandler(app);
  app.addContentTypeParser(['application/pkcs10', 'application/x-pem-file', 'text/plain', 'application/octet-stream'], { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  );

  /** The device behind the verified TLS client certificate, or null when none was presented. */
  async function presentedDevice(request: FastifyRequest, via?: 'est'): Promise<AuthenticatedDevice | null> {
    const socket = request.raw.socket as TLSSocket;
    const peer = socket.getPeerCertificate(false);
    if (!peer || !peer.raw) return null;
    if (!socket.authorized) throw new AppError('FORBIDDEN', `device certificate refused: ${String(socket.authorizationError ?? 'not issued by the Device CA')}`);
    // via: a renewal, whose refusal of a known certificate (revoked, expired) is audited.
    const device = await renewal.authenticate(peer.raw, via);
    // Using the new certificate of a rotation the device started confirms it.
    if (await renewal.confirmByUse(device, 'est')) request.log.info({ tenant_id: device.tenantId, device_id: device.deviceId }, 'rotation confirmed by use (EST)');
    return device;
  }

  const sendCerts = (reply: import('fastify').FastifyReply, ders: Uint8Array[]) =>
    reply.header('content-type', PKCS7_TYPE).header('content-transfer-encoding', 'base64').send(base64Lines(pkcs7CertsOnly(ders)));

  /**
   * Certfleet-Renewal-Due: when the device should renew the certificate it was given or used (RFC
   * 3339, its tenant's renewal window). Every answer also carries HTTP Date, the server's clock.
   */
  async function adviseRenewal(reply: import('fastify').FastifyReply, cert: Uint8Array | string | null) {
    if (!cert) return;
    const due = await renewal.renewalDue(cert).catch(() => null);
    if (due) reply.header('certfleet-renewal-due', due.toISOString());
  }

  const caDer = () => pemBlocks(options.deviceCaPem(), 'CERTIFICATE');
  const leafDer = (certPem: string) => pemBlocks(certPem, 'CERTIFICATE');

  app.get('/.well-known/est/cacerts', async (request, reply) => {
    const device = await presentedDevice(request).catch(() => null); // a refused certificate still gets the public CA
    if (device) await adviseRenewal(reply, (request.raw.socket as TLSSocket).getPeerCertificate(false).raw);
    return sendCerts(reply, caDer());
  });

  app.post('/.well-known/est/simplereenroll', async (request, reply) => admitted(request, peerTenant(request), async () => {
    const socket = request.raw.socket as TLSSocket;
    const peer = socket.getPeerCertificate(false);
    if (peer?.raw && ((!socket.authorized && String(socket.authorizationError) === 'CERT_HAS_EXPIRED') || (socket.authorized && renewal.hasExpired(peer.raw)))) {
      // TLS refused the certificate only because it expired (or certfleet's clock says it has): the tenant's recovery window may
      // still admit it. renewal.recover verifies issuer, signature and the rest itself (TLS's
      // verdict on them is not trusted: OpenSSL reports only one error).
      // The CSR is read inside, so a body that is no CSR is an audited refusal like any other.
      const result = await renewal.recover(peer.raw, () => csrPemOf(csrDer(request.body as Buffer)), 'est');
      request.log.info({ certificate_id: result.certificate_id, replayed: result.replayed, recovery: true }, 'EST simplereenroll with an expired certificate');
      await adviseRenewal(reply, result.cert_pem);
      return sendCerts(reply, leafDer(result.cert_pem));
    }
    const device = await presentedDevice(request, 'est');
    if (!device) throw new AppError('UNAUTHENTICATED', 'simplereenroll needs the device certificate as TLS client certificate');
    const result = await renewal.renew(device, () => csrPemOf(csrDer(request.body as Buffer)), 'est');
    request.log.info({ tenant_id: device.tenantId, device_id: device.deviceId, certificate_id: result.certificate_id, replayed: result.replayed }, 'EST simplereenroll');
    await adviseRenewal(reply, result.cert_pem);
    return sendCerts(reply, leafDer(result.cert_pem));
  }));

  app.post('/.well-known/est/simpleenroll', async (request, reply) => {
    const credentials = basicCredentials(request);
    if (!credentials) {
      reply.header('www-authenticate', 'Basic realm="certfleet EST", charset="UTF-8"');
      throw new AppError('UNAUTHENTICATED', 'simpleenroll needs HTTP Basic authentication: tenant/device and its enrollment token');
    }
    return admitted(request, credentials.username.split('/')[0] ?? '', async () => {
      const result = await renewal.enrollWithToken(credentials.username, credentials.password, csrPemOf(csrDer(request.body as Buffer)));
      request.log.info({ certificate_id: result.certificate_id }, 'EST simpleenroll');
      await adviseRenewal(reply, result.cert_pem);
      return sendCerts(reply, leafDer(result.cert_pem));
    });
  });

  // Factory onboarding (RFC 7030 3.2.2: an optional label names the CA; here, the tenant).
  const claims = options.claims;
  if (claims) {
    app.get<{ Params: { label: string } }>('/.well-known/est/:label/cacerts', async (_request, reply) => sendCerts(reply, caDer()));

    app.post<{ Params: { label: string } }>('/.well-known/est/:label/simpleenroll', async (request, reply) => admitted(request, request.params.label, async () => {
      const socket = request.raw.socket as TLSSocket;
      const peer = socket.getPeerCertificate(false);
      // TLS proved the client holds the key of the certificate it presented; certfleet checks its chain to the tenant's claim CAs.
      if (!peer || !peer.raw) throw new AppError('UNAUTHENTICATED', 'simpleenroll with a tenant label needs the claim (factory) certificate as TLS client certificate');
      const result = await claims.enrollWithClaim(request.params.label, peer.raw, csrPemOf(csrDer(request.body as Buffer)), 'est');
      request.log.info({ tenant_id: request.params.label, device_id: result.device_id, certificate_id: result.certificate_id, replayed: result.replayed }, 'EST claim enrollment');
      reply.header('x-certfleet-device-id', result.device_id);
      return sendCerts(reply, leafDer(result.cert_pem));
    }));
  }

  return app;
}
