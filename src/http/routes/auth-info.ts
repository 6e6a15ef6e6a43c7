import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../../auth/sessions.ts';
import type { TokenVerifier } from '../../auth/token-verifier.ts';
import { AppError } from '../../domain/errors.ts';
import { createAuthenticate, SESSION_COOKIE } from '../auth-hooks.ts';

export interface SignInConfig {
  /** OIDC authorization code flow with PKCE (a public client); null: paste a token. */
  oidc: { issuer: string; client_id: string; scope: string } | null;
}

const principalSchema = {
  type: 'object',
  required: ['subject', 'tenant_id', 'roles'],
  properties: { subject: { type: 'string' }, tenant_id: { type: ['string', 'null'] }, roles: { type: 'array', items: { type: 'string' } } },
} as const;

/** Under /auth: how the console signs in (public), and who the current session is. */
export function authInfoRoutes(verifier: TokenVerifier, sessions: SessionStore, signIn: SignInConfig) {
  const authenticate = createAuthenticate(verifier, sessions);
  return async (app: FastifyInstance) => {
    app.get(
      '/config',
      {
        schema: {
          tags: ['auth'],
          summary: 'How the web console signs in: OIDC settings, or null for a pasted token',
          security: [],
          response: {
            200: {
              type: 'object',
              required: ['oidc'],
              properties: {
                oidc: {
                  type: ['object', 'null'],
                  required: ['issuer', 'client_id', 'scope'],
                  properties: { issuer: { type: 'string' }, client_id: { type: 'string' }, scope: { type: 'string' } },
                },
              },
            },
          },
        },
      },
      async () => signIn,
    );
    app.get(
      '/me',
      {
        schema: {
          tags: ['auth'],
          summary: 'The signed-in principal (session cookie or bearer token); principal null when the request carries no credentials',
          response: { 200: { type: 'object', required: ['principal'], properties: { principal: { ...principalSchema, type: ['object', 'null'] } } } },
        },
      },
      async (request, reply) => {
        // No credentials at all is an answer (signed out), not an error; invalid ones are 401.
        if (!request.headers.authorization && !request.cookies?.[SESSION_COOKIE]) return { principal: null };
        await authenticate(request, reply);
        const p = request.principal;
        if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
        return { principal: { subject: p.subject, tenant_id: p.tenantId, roles: p.roles } };
      },
    );
  };
}
