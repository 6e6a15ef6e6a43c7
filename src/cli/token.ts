import type { Config } from '../config.ts';
import { loadOrCreateDevSigningKey, parseTtl } from '../auth/dev-signing-key.ts';
import { ROLES, type Role } from '../auth/roles.ts';
import { isValidTenantId } from '../domain/identifiers.ts';
import { systemClock } from '../domain/clock.ts';
import { devKeyPath } from '../composition/token-verifier.ts';
import type { Flags } from './commands.ts';
import { print } from './output.ts';

export async function tokenCommand(flags: Flags, config: Config): Promise<number> {
  if (config.oidc) throw new Error('OIDC is configured: get tokens from your identity provider');
  const role = ((flags.role as string | undefined) ?? 'customer') as Role;
  if (!ROLES.includes(role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  const tenant = flags.tenant as string | undefined;
  if (!tenant && !role.startsWith('operator')) throw new Error('--tenant is required for tenant roles');
  if (tenant && !isValidTenantId(tenant)) throw new Error(`invalid tenant id "${tenant}"`);
  const ttlSeconds = parseTtl((flags.ttl as string | undefined) ?? '1h');
  const key = await loadOrCreateDevSigningKey(devKeyPath(config));
  const token = await key.sign({ tenantId: tenant, roles: [role], subject: (flags.sub as string | undefined) ?? `cli:${role}`, ttlSeconds, now: systemClock.now() });
  print(flags, token, { token, tenant_id: tenant ?? null, role, expires_in: ttlSeconds });
  return 0;
}
