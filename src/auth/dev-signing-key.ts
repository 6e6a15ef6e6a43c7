import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { Role } from './roles.ts';
import { assertKeyFileProtected } from '../pki/key-file-permissions.ts';
import { writeFileAtomicNew } from '../support/atomic-file.ts';

/** Without OIDC settings, tokens are signed by a local key kept in the data dir. */
export interface DevSigningKey {
  issuer: string;
  audience: string;
  publicJwk: JWK;
  sign(claims: { tenantId?: string; roles: Role[]; subject: string; ttlSeconds: number; now: Date; brokerNode?: string }): Promise<string>;
}

const ISSUER = 'certfleet-dev';
const AUDIENCE = 'certfleet';

export async function loadOrCreateDevSigningKey(path: string): Promise<DevSigningKey> {
  let privateJwk: JWK;
  try {
    await assertKeyFileProtected(path, 'the development token signing key');
    privateJwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    privateJwk = { ...(await exportJWK(privateKey)), alg: 'ES256', kid: `dev-${Date.now().toString(36)}` };
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    try {
      // Whole under a temporary name, then linked into place: a process starting beside this one
      // (the API processes of one cluster) never reads the file before its content (as the webhook key file).
      await writeFileAtomicNew(path, JSON.stringify(privateJwk), 0o600);
    } catch (err) {
      // Another process created it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      await assertKeyFileProtected(path, 'the development token signing key');
      privateJwk = JSON.parse(await readFile(path, 'utf8')) as JWK;
    }
  }
  const { d: _d, ...publicJwk } = privateJwk;
  const key = await importJWK(privateJwk, 'ES256');
  return {
    issuer: ISSUER,
    audience: AUDIENCE,
    publicJwk,
    async sign({ tenantId, roles, subject, ttlSeconds, now, brokerNode }) {
      const iat = Math.floor(now.getTime() / 1000);
      return new SignJWT({ ...(tenantId ? { tenant_id: tenantId } : {}), ...(brokerNode ? { broker_node: brokerNode } : {}), realm_access: { roles } })
        .setProtectedHeader({ alg: 'ES256', kid: privateJwk.kid })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setSubject(subject)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSeconds)
        .sign(key);
    },
  };
}
