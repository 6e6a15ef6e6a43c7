import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../../auth/sessions.ts';
import type { TokenVerifier } from '../../auth/token-verifier.ts';
import { CSRF_COOKIE, requireSessionCsrf, SESSION_COOKIE, verifyBearer } from '../auth-hooks.ts';
import { noBody } from '../schemas.ts';

const sessionBody = {
  type: 'object',
  additionalProperties: false,
  required: ['token'],
  properties: { token: { type: 'string', minLength: 1, maxLength: 16_384 } },
} as const;

const sessionResponse = {
  type: 'object',
  required: ['tenant_id', 'roles', 'subject', 'csrf_token', 'expires_at'],
  properties: {
    tenant_id: { type: ['string', 'null'] },
    roles: { type: 'array', items: { type: 'string' } },
    subject: { type: 'string' },
    csrf_token: { type: 'string' },
    expires_at: { type: 'string', format: 'date-time' },
  },
} as const;

/**
 * Browser sessions: a bearer token is exchanged once for an opaque session id (HttpOnly
 * cookie, stored server-side until the token's expiry) and a CSRF token bound to that session.
 */
export function sessionRoutes(verifier: TokenVerifier, sessions: SessionStore, options: { secureCookies: boolean }) {
  const base = { path: '/', sameSite: 'strict' as const, secure: options.secureCookies };
  return async (app: FastifyInstance) => {
    app.post<{ Body: { token: string } }>(
      '/session',
      { schema: { tags: ['auth'], summary: 'Start a browser session from a bearer token', body: sessionBody, response: { 200: sessionResponse } } },
      async (request, reply) => {
        const principal = await verifyBearer(verifier, request.body.token);
        const session = await sessions.start(principal);
        reply.setCookie(SESSION_COOKIE, session.id, { ...base, httpOnly: true, expires: session.expiresAt });
        reply.setCookie(CSRF_COOKIE, session.csrfToken, { ...base, httpOnly: false, expires: session.expiresAt });
        return {
          tenant_id: principal.tenantId,
          roles: principal.roles,
          subject: principal.subject,
          csrf_token: session.csrfToken,
          expires_at: session.expiresAt.toISOString(),
        };
      },
    );
    app.delete(
      '/session',
      {
        schema: {
          tags: ['auth'],
          summary: 'End the browser session (the session id stops working at once); needs X-CSRF-Token',
          body: noBody,
          response: { 204: { type: 'null' } },
        },
      },
      async (request, reply) => {
        const id = request.cookies?.[SESSION_COOKIE];
        if (id) {
          const session = await sessions.principal(id);
          if (session) {
            requireSessionCsrf(request, session);
            await sessions.end(id);
          }
        }
        reply.clearCookie(SESSION_COOKIE, base);
        reply.clearCookie(CSRF_COOKIE, base);
        return reply.code(204).send();
      },
    );
  };
}
