import { assertGrants, type BrokerGrant } from '../domain/broker-acl.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

/** The tenant's broker grants: what every device of the tenant may use besides its own topics. */
export function createGetBrokerGrants({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor) => {
    const grants = await storage.asTenant(actor.tenantId, ({ brokerGrants }) => brokerGrants.listBrokerGrants(actor.tenantId));
    return { tenant_id: actor.tenantId, topic_prefix: `tenant/${actor.tenantId}/`, grants };
  };
}

/**
 * Replaces the tenant's broker grants (tenant-admin; checked by the route), audited, then has the
 * broker's acl_file rewritten. Each filter is relative to `tenant/<tenant>/` and can never reach a
 * device's own subtree, certfleet's topics, `$` topics or another tenant (assertGrants).
 */
export function createPutBrokerGrants({ storage, clock, brokerAcl }: Pick<AppDeps, 'storage' | 'clock' | 'brokerAcl'>) {
  return async (actor: Actor, input: { grants: BrokerGrant[] }) => {
    const grants = assertGrants(input.grants);
    const now = clock.now();
    await storage.asTenant(actor.tenantId, async ({ brokerGrants, audit }) => {
      const before = await brokerGrants.listBrokerGrants(actor.tenantId);
      await brokerGrants.replaceBrokerGrants({ tenantId: actor.tenantId, grants, actor: actor.id, now });
      await audit.recordAudit({
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'broker_grants.updated',
        targetType: 'tenant',
        targetId: actor.tenantId,
        at: now,
        details: { before, after: grants },
      });
    });
    await brokerAcl?.aclChanged();
    return { tenant_id: actor.tenantId, topic_prefix: `tenant/${actor.tenantId}/`, grants };
  };
}
