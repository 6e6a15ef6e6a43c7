import type { Config } from '../config.ts';
import { loadOrCreateDevSigningKey } from '../auth/dev-signing-key.ts';
import { durationMs } from './client-flags.ts';
import { ROLES, type Role } from '../auth/roles.ts';
import { isValidBrokerNodeName, isValidTenantId } from '../domain/identifiers.ts';
import { systemClock } from '../domain/clock.ts';
import { developmentAuthAllowed, devKeyPath } from '../composition/token-verifier.ts';
import { UsageError, type Flags } from './spec.ts';
import { print } from './output.ts';

export async function tokenCommand(flags: Flags, config: Config): Promise<number> {
  if (config.oidc) throw new Error('OIDC is configured: get tokens from your identity provider');
  const { allowed, warning } = developmentAuthAllowed(config);
  if (!allowed) {
    throw new Error('production mode (DATABASE_URL set or NODE_ENV=production): no development tokens are minted; get tokens from your identity provider (OIDC)');
  }
  if (warning) console.error(`warning: ${warning}`);
  const role = ((flags.role as string | undefined) ?? 'customer') as Role;
  if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')} (got "${role}")`);
  const tenant = flags.tenant as string | undefined;
  const node = flags.node as string | undefined;
  if (role === 'broker-agent') {
    if (!node || !isValidBrokerNodeName(node)) throw new UsageError('--role broker-agent needs --node NAME (letters, digits, _ and -, at most 40)');
    if (tenant) throw new UsageError('a broker-agent token names no tenant');
  } else if (node) throw new UsageError('--node goes with --role broker-agent only');
  if (!tenant && !role.startsWith('operator') && role !== 'broker-agent') throw new UsageError(`--tenant is required for the ${role} role (operator, operator-admin and broker-agent tokens have no tenant)`);
  if (tenant && !isValidTenantId(tenant)) throw new UsageError(`--tenant must be a tenant id: letters, digits, '.', '_', ':' or '-', at most 128 (got "${tenant}")`);
  const ttlSeconds = Math.floor((durationMs(flags.ttl ?? '1h', 'ttl') ?? 0) / 1000);
  if (ttlSeconds > config.devTokenMaxTtlSeconds) {
    throw new UsageError(`--ttl may be at most ${config.devTokenMaxTtlSeconds} s (CERTFLEET_DEV_TOKEN_MAX_TTL); the service refuses longer-lived development tokens`);
  }
  const key = await loadOrCreateDevSigningKey(devKeyPath(config));
  const subject = (flags.sub as string | undefined) ?? (node ? `broker-node:${node}` : `cli:${role}`);
  const token = await key.sign({ tenantId: tenant, roles: [role], subject, ttlSeconds, now: systemClock.now(), ...(node ? { brokerNode: node } : {}) });
  print(flags, token, { token, tenant_id: tenant ?? null, role, ...(node ? { broker_node: node } : {}), expires_in: ttlSeconds });
  return 0;
}
