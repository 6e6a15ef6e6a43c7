import type { DeviceRecord } from '../../domain/device.ts';
import type { DeviceListQuery, DevicePage } from '../../app/storage-ports.ts';
import type { Queryable } from '../driver.ts';
import { iso } from '../rows.ts';
import { createFilter, planKeysetPages } from '../sql-filter.ts';
import { countedRows, DEVICE_KIND } from './row-counts-repo.ts';

const COLUMNS = 'tenant_id, device_id, site_id, status, created_at, updated_at';

const toDevice = (r: Record<string, unknown>): DeviceRecord => ({
  tenant_id: String(r.tenant_id),
  device_id: String(r.device_id),
  site_id: (r.site_id as string | null) ?? null,
  status: String(r.status),
  created_at: iso(r.created_at),
  updated_at: iso(r.updated_at),
});

export async function insertDevice(tx: Queryable, d: { tenantId: string; deviceId: string; siteId: string | null; now: Date }) {
  const { rows } = await tx.query(
    `INSERT INTO device_registry (tenant_id, device_id, site_id, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $4) RETURNING ${COLUMNS}`,
    [d.tenantId, d.deviceId, d.siteId, d.now],
  );
  return toDevice(rows[0]);
}

/** Row-locks the device: rotations and issuance for one device are serialised on it. */
export async function lockDevice(tx: Queryable, tenantId: string, deviceId: string): Promise<DeviceRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM device_registry WHERE tenant_id = $1 AND device_id = $2 FOR UPDATE`, [tenantId, deviceId]);
  return rows[0] ? toDevice(rows[0]) : null;
}

export async function findDevice(tx: Queryable, tenantId: string, deviceId: string): Promise<DeviceRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM device_registry WHERE tenant_id = $1 AND device_id = $2`, [tenantId, deviceId]);
  return rows[0] ? toDevice(rows[0]) : null;
}

/**
 * Keyset pagination on (tenant_id, device_id) (the primary key); RLS already scopes a tenant
 * transaction. `total` is exact, from the per-tenant counters (migration 012).
 */
export async function listDevices(tx: Queryable, q: DeviceListQuery): Promise<DevicePage> {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `tenant_id = ${p}`, q.tenantId);
  const total = await countedRows(tx, [DEVICE_KIND], q.tenantId);
  if (q.after) {
    const [tenant, ...device] = q.after.split('/');
    // Within one tenant a plain bound on device_id: the primary key's range starts right there.
    if (q.tenantId === tenant) f.add((p) => `device_id > ${p}`, device.join('/'));
    else f.raw(`(tenant_id, device_id) > (${f.param(tenant)}, ${f.param(device.join('/'))})`);
  }
  await planKeysetPages(tx);
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM device_registry${f.sql()} ORDER BY tenant_id, device_id LIMIT ${f.param(q.limit + 1)}`, f.params);
  const devices = rows.slice(0, q.limit).map(toDevice);
  const last = devices[devices.length - 1];
  return { devices, total, next: rows.length > q.limit && last ? `${last.tenant_id}/${last.device_id}` : null };
}
