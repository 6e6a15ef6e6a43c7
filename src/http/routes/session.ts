import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../domain/errors.ts';
import { InvalidTokenError, type TokenVerifier } from '../../auth/token-verifier.ts';
import { CSRF_COOKIE, SESSION_COOKIE } from '../auth-hooks.ts';
import { noBody } from '../schemas.ts';

/** Browser sessions: exchange a token for an HttpOnly cookie plus a readable CSRF cookie. */
export function sessionRoutes(verifier: TokenVerifier, options: { secureCookies: boolean }) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: { token: string } }>(
      '/session',
      {
        schema: {
          tags: ['auth'],
          summary: 'Start a browser session from a bearer token',
          body: { type: 'object', additionalProperties: false, required: ['token'], properties: { token: { type: 'string', minLength: 1, maxLength: 16_384 } } },
        },
      },
      async (request, reply) => {
        let principal;
        try {
          principal = await verifier.verify(request.body.token);
        } catch (e) {
          if (e instanceof InvalidTokenError) throw new AppError('UNAUTHENTICATED', e.message);
          throw e;
        }
        const csrf = randomBytes(24).toString('base64url');
        const base = { path: '/', sameSite: 'strict' as const, secure: options.secureCookies };
        reply.setCookie(SESSION_COOKIE, request.body.token, { ...base, httpOnly: true });
        reply.setCookie(CSRF_COOKIE, csrf, { ...base, httpOnly: false });
        return { tenant_id: principal.tenantId, roles: principal.roles, subject: principal.subject, csrf_token: csrf };
      },
    );
    app.delete('/session', { schema: { tags: ['auth'], summary: 'End the browser session', body: noBody } }, async (_request, reply) => {
      reply.clearCookie(SESSION_COOKIE, { path: '/' });
      reply.clearCookie(CSRF_COOKIE, { path: '/' });
      return reply.code(204).send();
    });
  };
}
