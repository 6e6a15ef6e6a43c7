/** The tenant's renewal policy (tenant_settings columns, migration 021) and the advice the worker published. */
import { DEFAULT_RENEWAL_POLICY, type RenewalPolicy } from '../../domain/renewal-policy.ts';
import type { Queryable } from '../driver.ts';

export async function getRenewalPolicy(tx: Queryable, tenantId: string): Promise<RenewalPolicy> {
  const { rows } = await tx.query<{ renewal_validity_days: number | null; renewal_window: number | null; renewal_jitter: number | null; recovery_window_days: number | null }>(
    'SELECT renewal_validity_days, renewal_window, renewal_jitter, recovery_window_days FROM tenant_settings WHERE tenant_id = $1',
    [tenantId],
  );
  const r = rows[0];
  return {
    validity_days: r?.renewal_validity_days ?? DEFAULT_RENEWAL_POLICY.validity_days,
    renewal_window: r?.renewal_window == null ? DEFAULT_RENEWAL_POLICY.renewal_window : Number(r.renewal_window),
    jitter: r?.renewal_jitter == null ? DEFAULT_RENEWAL_POLICY.jitter : Number(r.renewal_jitter),
    recovery_window_days: r?.recovery_window_days ?? DEFAULT_RENEWAL_POLICY.recovery_window_days,
  };
}

export async function setRenewalPolicy(tx: Queryable, tenantId: string, policy: RenewalPolicy, at: Date): Promise<void> {
  await tx.query(
    `INSERT INTO tenant_settings (tenant_id, renewal_validity_days, renewal_window, renewal_jitter, recovery_window_days, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant_id) DO UPDATE SET renewal_validity_days = $2, renewal_window = $3, renewal_jitter = $4, recovery_window_days = $5, updated_at = $6`,
    [tenantId, policy.validity_days, policy.renewal_window, policy.jitter, policy.recovery_window_days, at],
  );
}

/** Policies of every tenant that has one (operator role); the others have the default. */
export async function allRenewalPolicies(tx: Queryable): Promise<Map<string, RenewalPolicy>> {
  const { rows } = await tx.query<{ tenant_id: string }>('SELECT tenant_id FROM tenant_settings');
  const out = new Map<string, RenewalPolicy>();
  for (const r of rows) out.set(r.tenant_id, await getRenewalPolicy(tx, r.tenant_id));
  return out;
}
