import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/**
 * A minimal OpenID provider on loopback standing in for Keycloak (a true boundary): discovery,
 * an authorization endpoint that signs the user in at once, a token endpoint that enforces
 * PKCE S256 and one-time codes, and the JWKS. CORS is open, as a provider configured with the
 * console's web origin answers.
 */
export async function startOidcProvider(options: { clientId: string; audience: string; claims: Record<string, unknown> }) {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'console-test', alg: 'RS256', use: 'sig' };
  const codes = new Map<string, { challenge: string; redirectUri: string }>();
  const exchanges: { ok: boolean; reason?: string }[] = [];
  let issuer = '';

  const send = (res: ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*' }).end(JSON.stringify(body));
  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => resolve(text));
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(res, 200, { issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks` });
    }
    if (url.pathname === '/jwks') return send(res, 200, { keys: [jwk] });
    if (url.pathname === '/authorize') {
      const q = url.searchParams;
      if (q.get('client_id') !== options.clientId || q.get('response_type') !== 'code' || q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) {
        return send(res, 400, { error: 'invalid_request' });
      }
      const code = randomBytes(16).toString('hex');
      codes.set(code, { challenge: q.get('code_challenge')!, redirectUri: q.get('redirect_uri')! });
      const back = new URL(q.get('redirect_uri')!);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      return res.writeHead(302, { location: back.toString() }).end();
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      const code = codes.get(form.get('code') ?? '');
      codes.delete(form.get('code') ?? '');
      const verifier = form.get('code_verifier') ?? '';
      const reason = !code
        ? 'unknown or reused code'
        : createHash('sha256').update(verifier).digest('base64url') !== code.challenge
          ? 'PKCE verifier does not match the challenge'
          : form.get('redirect_uri') !== code.redirectUri || form.get('client_id') !== options.clientId
            ? 'client or redirect mismatch'
            : undefined;
      exchanges.push({ ok: reason === undefined, reason });
      if (reason) return send(res, 400, { error: 'invalid_grant', error_description: reason });
      const accessToken = await new SignJWT(options.claims)
        .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
        .setIssuer(issuer)
        .setAudience(options.audience)
        .setSubject('oidc-user-1')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
      return send(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 300 });
    }
    send(res, 404, { error: 'not_found' });
  };
  // A failure in the fake provider answers 500 with its message (the test then fails on it) instead of hanging the request.
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => send(res, 500, { error: 'server_error', error_description: String(error) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    exchanges,
    // Browsers and JWKS clients keep connections alive: drop them rather than wait for their timeout.
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
