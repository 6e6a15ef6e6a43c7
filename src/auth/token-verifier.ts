import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { isValidTenantId, RESERVED_TENANT_ID, isValidBrokerNodeName } from '../domain/identifiers.ts';
import { ROLES, type Principal, type Role } from './roles.ts';
import type { DevSigningKey } from './dev-signing-key.ts';

export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
}

export class InvalidTokenError extends Error {}

/** The organization names of a Keycloak `organization` claim: a string, a list, or an object keyed by name. */
function organizations(org: unknown): string[] {
  if (org === undefined || org === null) return [];
  if (typeof org === 'string') return [org];
  if (Array.isArray(org)) return org.map((o) => (typeof o === 'string' ? o : ''));
  if (typeof org === 'object') return Object.keys(org);
  return [''];
}

/** `tenant_id`, or a Keycloak `organization` claim naming exactly one organization. */
function tenantFrom(payload: JWTPayload): string | null {
  const orgs = organizations(payload.organization);
  if (orgs.length > 1) throw new InvalidTokenError('the token names several organizations: a token must name exactly one tenant');
  const direct = payload.tenant_id;
  if (direct !== undefined && typeof direct !== 'string') throw new InvalidTokenError('the tenant_id claim must be a string');
  if (direct !== undefined && orgs.length === 1 && orgs[0] !== direct) throw new InvalidTokenError('the tenant_id and organization claims disagree');
  return direct ?? orgs[0] ?? null;
}

/** Roles come from `realm_access.roles` only (Keycloak's realm roles); other role claims are ignored. */
export function principalFrom(payload: JWTPayload): Principal {
  const realm = payload.realm_access as { roles?: unknown } | undefined;
  const raw = Array.isArray(realm?.roles) ? realm.roles : [];
  const roles = raw.filter((r): r is Role => (ROLES as readonly unknown[]).includes(r));
  const tenantId = tenantFrom(payload);
  if (tenantId !== null && !isValidTenantId(tenantId)) throw new InvalidTokenError('the token carries an invalid tenant id');
  if (tenantId === RESERVED_TENANT_ID) throw new InvalidTokenError(`the tenant id "${RESERVED_TENANT_ID}" is reserved by certfleet (broker canaries)`);
  if (typeof payload.exp !== 'number') throw new InvalidTokenError('the token has no expiry (exp)');
  const node = payload.broker_node;
  if (node !== undefined && (typeof node !== 'string' || !isValidBrokerNodeName(node))) throw new InvalidTokenError('the broker_node claim must be a broker node name');
  if (roles.includes('broker-agent') && (node === undefined || tenantId !== null || roles.length > 1)) {
    throw new InvalidTokenError('a broker-agent token names exactly one broker node (broker_node), no tenant and no other role');
  }
  return { subject: String(payload.sub ?? 'unknown'), tenantId, roles, expiresAt: new Date(payload.exp * 1000), ...(typeof node === 'string' ? { brokerNode: node } : {}) };
}

const CACHE_LIMIT = 10_000;

/**
 * Verified tokens are remembered until they expire (bounded), so a device fleet's
 * automation reusing one token does not pay a signature check per request.
 */
function verifierWith(keys: JWTVerifyGetKey, options: { issuer: string; audience: string; maxLifetimeSeconds?: number }): TokenVerifier {
  const cache = new Map<string, { principal: Principal; expiresAt: number }>();
  return {
    async verify(token) {
      const hit = cache.get(token);
      if (hit && hit.expiresAt > Date.now()) return hit.principal;
      try {
        const max = options.maxLifetimeSeconds;
        const { payload } = await jwtVerify(token, keys, {
          issuer: options.issuer,
          audience: options.audience,
          clockTolerance: 30,
          requiredClaims: max === undefined ? ['exp'] : ['exp', 'iat'],
          ...(max === undefined ? {} : { maxTokenAge: max }),
        });
        if (max !== undefined && payload.exp! - payload.iat! > max) {
          throw new InvalidTokenError(`development tokens may live at most ${max} s (CERTFLEET_DEV_TOKEN_MAX_TTL)`);
        }
        const principal = principalFrom(payload);
        if (cache.size >= CACHE_LIMIT) cache.clear();
        cache.set(token, { principal, expiresAt: Math.min(payload.exp!, max === undefined ? Infinity : payload.iat! + max) * 1000 });
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

export const createDevVerifier = (key: DevSigningKey, maxLifetimeSeconds: number) =>
  verifierWith(createLocalJWKSet({ keys: [key.publicJwk] }), { issuer: key.issuer, audience: key.audience, maxLifetimeSeconds });
