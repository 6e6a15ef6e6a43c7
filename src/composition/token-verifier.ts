import type { Config } from '../config.ts';
import { loadOrCreateDevSigningKey } from '../auth/dev-signing-key.ts';
import { createDevVerifier, createOidcVerifier, type TokenVerifier } from '../auth/token-verifier.ts';

export const devKeyPath = (config: Pick<Config, 'dataDir'>) => `${config.dataDir}/dev-token-key.json`;

export const DEV_AUTH_IN_PRODUCTION_WARNING =
  'CERTFLEET_AUTH=development in production mode: bearer tokens are signed by the local development key, not an identity provider. Configure OIDC_ISSUER, OIDC_AUDIENCE and OIDC_JWKS_URL.';

/**
 * Development tokens are what a production deployment must never fall back to silently:
 * in production mode (DATABASE_URL or NODE_ENV=production) without OIDC they need an
 * explicit CERTFLEET_AUTH=development, and then come with a warning.
 */
export function developmentAuthAllowed(config: Pick<Config, 'productionMode' | 'developmentAuthExplicit' | 'oidc'>): { allowed: boolean; warning: string | null } {
  if (config.oidc) return { allowed: false, warning: null };
  if (!config.productionMode) return { allowed: true, warning: null };
  return config.developmentAuthExplicit ? { allowed: true, warning: DEV_AUTH_IN_PRODUCTION_WARNING } : { allowed: false, warning: null };
}

/**
 * Throws when this configuration has no way to verify tokens (production mode without OIDC and
 * without CERTFLEET_AUTH=development). Called before anything is created or migrated.
 */
export function assertTokenVerificationConfigured(config: Pick<Config, 'productionMode' | 'developmentAuthExplicit' | 'oidc'>): void {
  if (config.oidc || developmentAuthAllowed(config).allowed) return;
  throw new Error(
    'production mode (DATABASE_URL set or NODE_ENV=production) needs OIDC settings (OIDC_ISSUER, OIDC_AUDIENCE, OIDC_JWKS_URL); ' +
      'set CERTFLEET_AUTH=development to use development tokens anyway',
  );
}

export async function tokenVerifierFor(config: Config): Promise<{ verifier: TokenVerifier; mode: string; warning: string | null }> {
  if (config.oidc) return { verifier: createOidcVerifier(config.oidc), mode: `OIDC (${config.oidc.issuer})`, warning: null };
  assertTokenVerificationConfigured(config);
  const { warning } = developmentAuthAllowed(config);
  const key = await loadOrCreateDevSigningKey(devKeyPath(config));
  return {
    verifier: createDevVerifier(key, config.devTokenMaxTtlSeconds),
    mode: `development tokens (key ${devKeyPath(config)}; npx certfleet token --tenant T)`,
    warning,
  };
}
