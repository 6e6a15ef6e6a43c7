import type { Config } from '../config.ts';
import { loadOrCreateDevSigningKey } from '../auth/dev-signing-key.ts';
import { createDevVerifier, createOidcVerifier, type TokenVerifier } from '../auth/token-verifier.ts';

export const devKeyPath = (config: Pick<Config, 'dataDir'>) => `${config.dataDir}/dev-token-key.json`;

export async function tokenVerifierFor(config: Config): Promise<{ verifier: TokenVerifier; mode: string }> {
  if (config.oidc) return { verifier: createOidcVerifier(config.oidc), mode: `OIDC (${config.oidc.issuer})` };
  const key = await loadOrCreateDevSigningKey(devKeyPath(config));
  return { verifier: createDevVerifier(key), mode: `development tokens (key ${devKeyPath(config)}; npx certfleet token --tenant T)` };
}
