import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { isValidTenantId } from '../domain/identifiers.ts';
import { ROLES, type Principal, type Role } from './roles.ts';
import type { DevSigningKey } from './dev-signing-key.ts';

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

export class InvalidTokenError extends Error {}

/** tenant_id claim, or a Keycloak `organization` claim (a string, a list, or an object keyed by name). */
function tenantFrom(payload: JWTPayload): string | null {
  const direct = payload.tenant_id;
  if (typeof direct === 'string') return direct;
  const org = payload.organization;
  if (typeof org === 'string') return org;
  if (Array.isArray(org) && typeof org[0] === 'string') return org[0];
  if (org && typeof org === 'object') return Object.keys(org)[0] ?? null;
  return null;
}

export function principalFrom(payload: JWTPayload): Principal {
  const realm = payload.realm_access as { roles?: unknown } | undefined;
  const raw = Array.isArray(realm?.roles) ? realm.roles : Array.isArray(payload.roles) ? payload.roles : [];
  const roles = raw.filter((r): r is Role => (ROLES as readonly unknown[]).includes(r));
  const tenantId = tenantFrom(payload);
  if (tenantId !== null && !isValidTenantId(tenantId)) throw new InvalidTokenError('the token carries an invalid tenant id');
  return { subject: String(payload.sub ?? 'unknown'), tenantId, roles };
}

const CACHE_LIMIT = 10_000;

/**
 * Verified tokens are remembered until they expire (bounded), so a device fleet's
 * automation reusing one token does not pay a signature check per request.
 */
function verifierWith(keys: JWTVerifyGetKey, options: { issuer: string; audience: string }): TokenVerifier {
  const cache = new Map<string, { principal: Principal; expiresAt: number }>();
  return {
    async verify(token) {
      const hit = cache.get(token);
      if (hit && hit.expiresAt > Date.now()) return hit.principal;
      try {
        const { payload } = await jwtVerify(token, keys, { issuer: options.issuer, audience: options.audience, clockTolerance: 30 });
        const principal = principalFrom(payload);
        if (payload.exp) {
          if (cache.size >= CACHE_LIMIT) cache.clear();
          cache.set(token, { principal, expiresAt: payload.exp * 1000 });
        }
        return principal;
      } catch (e) {
        if (e instanceof InvalidTokenError) throw e;
        throw new InvalidTokenError(`invalid bearer token: ${(e as Error).message}`);
      }
    },
  };
}

export const createOidcVerifier = (oidc: { issuer: string; audience: string; jwksUrl: string }) =>
  verifierWith(createRemoteJWKSet(new URL(oidc.jwksUrl)), oidc);

export const createDevVerifier = (key: DevSigningKey) =>
  verifierWith(createLocalJWKSet({ keys: [key.publicJwk] }), { issuer: key.issuer, audience: key.audience });
