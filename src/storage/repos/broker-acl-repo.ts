/** Tenant broker grants, and what the broker's acl_file is rendered from (src/broker/acl-sync.ts). */
import type { AclDevice, BrokerGrant, BrokerGrantAccess } from '../../domain/broker-acl.ts';
import type { Queryable } from '../driver.ts';

const toGrant = (r: Record<string, unknown>): BrokerGrant => ({ filter: String(r.filter), access: String(r.access) as BrokerGrantAccess });

export async function listBrokerGrants(tx: Queryable, tenantId: string): Promise<BrokerGrant[]> {
  const { rows } = await tx.query(`SELECT filter, access FROM broker_grants WHERE tenant_id = $1 ORDER BY position, filter`, [tenantId]);
  return rows.map(toGrant);
}

/** Replaces the tenant's grants (PUT); the caller validated them. */
export async function replaceBrokerGrants(tx: Queryable, g: { tenantId: string; grants: BrokerGrant[]; actor: string; now: Date }): Promise<void> {
  await tx.query(`DELETE FROM broker_grants WHERE tenant_id = $1`, [g.tenantId]);
  for (const [position, grant] of g.grants.entries()) {
    await tx.query(
      `INSERT INTO broker_grants (tenant_id, filter, access, position, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [g.tenantId, grant.filter, grant.access, position, g.actor, g.now],
    );
  }
}

/** Every tenant's grants (operator role). */
export async function allBrokerGrants(tx: Queryable): Promise<Map<string, BrokerGrant[]>> {
  const { rows } = await tx.query(`SELECT tenant_id, filter, access FROM broker_grants ORDER BY tenant_id, position, filter`);
  const byTenant = new Map<string, BrokerGrant[]>();
  for (const r of rows) {
    const tenant = String(r.tenant_id);
    byTenant.set(tenant, [...(byTenant.get(tenant) ?? []), toGrant(r)]);
  }
  return byTenant;
}

/** Every registered device (operator role), in a stable order so an unchanged fleet renders the same file. */
export async function allAclDevices(tx: Queryable): Promise<AclDevice[]> {
  const { rows } = await tx.query(`SELECT tenant_id, device_id FROM device_registry ORDER BY tenant_id, device_id`);
  return rows.map((r) => ({ tenantId: String(r.tenant_id), deviceId: String(r.device_id) }));
}
