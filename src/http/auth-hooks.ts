import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { Actor } from '../app/ports.ts';
import { isBrokerAgent, isCustomer, isOperator, type Principal, type Role } from '../auth/roles.ts';
import type { SessionStore } from '../auth/sessions.ts';
import { InvalidTokenError, type TokenVerifier } from '../auth/token-verifier.ts';

export const SESSION_COOKIE = 'certfleet_session';
export const CSRF_COOKIE = 'csrf_token';
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export async function verifyBearer(verifier: TokenVerifier, token: string): Promise<Principal> {
  try {
    return await verifier.verify(token);
  } catch (e) {
    if (e instanceof InvalidTokenError) throw new AppError('UNAUTHENTICATED', e.message);
    throw e;
  }
}

/**
 * Who is calling: a bearer token (no CSRF token needed, one is ignored), or a browser
 * session cookie (an opaque id looked up server-side) whose unsafe requests must carry the
 * session's CSRF token in X-CSRF-Token.
 */
export function createAuthenticate(verifier: TokenVerifier, sessions: SessionStore) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const header = request.headers.authorization;
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      if (!m) throw new AppError('UNAUTHENTICATED', 'Authorization must be "Bearer <token>"');
      request.principal = await verifyBearer(verifier, m[1]!);
      return;
    }
    const sessionId = request.cookies?.[SESSION_COOKIE];
    if (!sessionId) throw new AppError('UNAUTHENTICATED', 'authentication required: send Authorization: Bearer <token>');
    const session = await sessions.principal(sessionId);
    if (!session) throw new AppError('UNAUTHENTICATED', 'the browser session has ended or expired: sign in again');
    if (!SAFE_METHODS.has(request.method)) requireSessionCsrf(request, session);
    request.principal = session.principal;
  };
}

/** An unsafe request of a browser session must carry that session's CSRF token. */
export function requireSessionCsrf(request: FastifyRequest, session: { csrfMatches(sent: string): boolean }): void {
  const sent = request.headers[CSRF_HEADER];
  if (typeof sent !== 'string' || !session.csrfMatches(sent)) {
    throw new AppError('CSRF_FAILED', "X-CSRF-Token must carry this session's CSRF token");
  }
}

/** The one authorization check of a route scope: every route under it needs this role. */
export function authorizeScope(access: 'customer' | 'operator') {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const p = request.principal;
    if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
    if (access === 'customer' && !isCustomer(p)) {
      throw new AppError('FORBIDDEN', 'this route needs a tenant token with the customer or tenant-admin role');
    }
    if (access === 'operator' && !isOperator(p)) throw new AppError('FORBIDDEN', 'this route needs the operator role');
  };
}

/**
 * A route that needs more than its scope's role (e.g. minting device credentials needs
 * `tenant-admin`, not the plain `customer` role): an onRequest hook of that route, run after
 * the scope's authentication and authorization.
 */
export function requireRole(role: Role) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const p = request.principal;
    if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
    if (!p.roles.includes(role)) throw new AppError('FORBIDDEN', `this route needs the ${role} role`);
  };
}

/** The caller of a customer route (authorized by its scope's hook). */
export function customerActor(request: FastifyRequest): Actor {
  const p = request.principal;
  if (!p || p.tenantId === null) throw new AppError('UNAUTHENTICATED', 'authentication required');
  return { id: p.subject, tenantId: p.tenantId };
}

/** Changes only a tenant administrator may make (role `tenant-admin`). */
export function requireTenantAdmin(request: FastifyRequest): Actor {
  const actor = customerActor(request);
  if (!request.principal?.roles.includes('tenant-admin')) throw new AppError('FORBIDDEN', 'this change needs the tenant-admin role');
  return actor;
}

/** The caller of an operator route (authorized by its scope's hook). */
export function operatorPrincipal(request: FastifyRequest): Principal {
  const p = request.principal;
  if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
  return p;
}

/** A broker agent's scope: a bearer token (never a browser session) with the broker-agent role and its node. */
export function authenticateBrokerAgent(verifier: TokenVerifier) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const m = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
    if (!m) throw new AppError('UNAUTHENTICATED', 'a broker agent authenticates with Authorization: Bearer <token>');
    const principal = await verifyBearer(verifier, m[1]!);
    if (!isBrokerAgent(principal)) throw new AppError('FORBIDDEN', 'this route needs a broker-agent token (role broker-agent, claim broker_node)');
    request.principal = principal;
  };
}
