import { assertRenewalPolicy, MAX_RECOVERY_WINDOW_DAYS, type RenewalPolicy } from '../domain/renewal-policy.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';

const view = (tenantId: string, policy: RenewalPolicy) => ({ tenant_id: tenantId, ...policy, max_recovery_window_days: MAX_RECOVERY_WINDOW_DAYS });

/** The tenant's renewal policy (defaults when it never set one). */
export function createGetRenewalPolicy({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor) => view(actor.tenantId, await storage.asTenant(actor.tenantId, (r) => r.renewalPolicy.getRenewalPolicy(actor.tenantId)));
}

/** Changes the tenant's renewal policy (tenant-admin, checked by the route); fields left out keep their value; audited with before and after. */
export function createPutRenewalPolicy({ storage, clock }: Pick<AppDeps, 'storage' | 'clock'>) {
  return async (actor: Actor, input: Partial<Record<keyof RenewalPolicy, unknown>>) => {
    const now = clock.now();
    const after = await storage.asTenant(actor.tenantId, async ({ renewalPolicy, audit }) => {
      const before = await renewalPolicy.getRenewalPolicy(actor.tenantId);
      const next = assertRenewalPolicy(input, before);
      await renewalPolicy.setRenewalPolicy(actor.tenantId, next, now);
      await audit.recordAudit({
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'renewal_policy.updated',
        targetType: 'tenant',
        targetId: actor.tenantId,
        at: now,
        details: { before, after: next },
      });
      return next;
    });
    return view(actor.tenantId, after);
  };
}
