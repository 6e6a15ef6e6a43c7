import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import type { Actor } from '../app/ports.ts';
import { isCustomer, isOperator, type Principal } from '../auth/roles.ts';
import { InvalidTokenError, type TokenVerifier } from '../auth/token-verifier.ts';

export const SESSION_COOKIE = 'certfleet_session';
export const CSRF_COOKIE = 'csrf_token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const sameSecret = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * Bearer tokens need no CSRF token (and are accepted with one). A browser session
 * (cookie) must echo its csrf_token cookie in X-CSRF-Token on every unsafe method.
 */
export function createAuthenticate(verifier: TokenVerifier) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const header = request.headers.authorization;
    let token: string | undefined;
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      if (!m) throw new AppError('UNAUTHENTICATED', 'Authorization must be "Bearer <token>"');
      token = m[1];
    } else {
      token = request.cookies?.[SESSION_COOKIE];
      if (token && !SAFE_METHODS.has(request.method)) {
        const cookie = request.cookies?.[CSRF_COOKIE] ?? '';
        const sent = request.headers['x-csrf-token'];
        if (!cookie || typeof sent !== 'string' || !sameSecret(cookie, sent)) {
          throw new AppError('CSRF_FAILED', 'X-CSRF-Token header must match the csrf_token cookie');
        }
      }
    }
    if (!token) throw new AppError('UNAUTHENTICATED', 'authentication required: send Authorization: Bearer <token>');
    try {
      request.principal = await verifier.verify(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new AppError('UNAUTHENTICATED', e.message);
      throw e;
    }
  };
}

export function customerActor(request: FastifyRequest): Actor {
  const p = request.principal;
  if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
  if (!isCustomer(p)) throw new AppError('FORBIDDEN', 'this route needs a tenant token with the customer or tenant-admin role');
  return { id: p.subject, tenantId: p.tenantId! };
}

export function requireOperator(request: FastifyRequest): Principal {
  const p = request.principal;
  if (!p) throw new AppError('UNAUTHENTICATED', 'authentication required');
  if (!isOperator(p)) throw new AppError('FORBIDDEN', 'this route needs the operator role');
  return p;
}
