import { DEVICE_TOTAL_CAP, prefixUpperBound, type DeviceRecord, type DeviceSummary } from '../../domain/device.ts';
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

/*
 * Per-device conditions are scalar subqueries over the device's own certificates, read through
 * (tenant_id, device_id, ...) and with no status in their WHERE: an EXISTS would be pulled up
 * into a join, and a `status = 'ACTIVE'` condition lets the planner pick the partial index of
 * the tenant's ACTIVE expiries and filter it by device. Without table statistics (right after
 * a bulk load) it does both, and either is quadratic: seconds at 100,000 devices.
 */
const has = (from: string, where: string, yes = true) => `(SELECT true FROM ${from} WHERE ${where} LIMIT 1) IS ${yes ? 'NOT ' : ''}NULL`;

/** The device's certificate status: ACTIVE if one is, else EXPIRED, else REVOKED, else NONE. */
const DEVICE_STATUS = `coalesce((SELECT (ARRAY['ACTIVE', 'EXPIRED', 'REVOKED'])[min(array_position(ARRAY['ACTIVE', 'EXPIRED', 'REVOKED'], x.status))]
    FROM device_certificates x WHERE x.tenant_id = d.tenant_id AND x.device_id = d.device_id), 'NONE')`;

/** The soonest not_after of the device's ACTIVE certificates (null without one). */
const NEXT_EXPIRY = `(SELECT min(e.not_after) FILTER (WHERE e.status = 'ACTIVE') FROM device_certificates e WHERE e.tenant_id = d.tenant_id AND e.device_id = d.device_id)`;

const pendingRotation = (yes = true) => has('certificate_rotations r', `r.tenant_id = d.tenant_id AND r.device_id = d.device_id AND r.status = 'PENDING'`, yes);

/** The page's own rows only: each device's certificates read through (tenant_id, device_id, id). */
const SUMMARY = `CROSS JOIN LATERAL (
    SELECT min(c.not_after) FILTER (WHERE c.status = 'ACTIVE') AS next_expiry,
           count(*) FILTER (WHERE c.status = 'ACTIVE')::int AS active_certificates,
           coalesce(bool_or(c.status = 'EXPIRED'), false) AS any_expired,
           coalesce(bool_or(c.status = 'REVOKED'), false) AS any_revoked,
           ${pendingRotation()} AS rotation_pending
    FROM device_certificates c WHERE c.tenant_id = d.tenant_id AND c.device_id = d.device_id) s`;
const SUMMARY_COLUMNS = 's.next_expiry, s.active_certificates, s.any_expired, s.any_revoked, s.rotation_pending';

const toSummary = (r: Record<string, unknown>): DeviceSummary => ({
  ...toDevice(r),
  certificate_status: Number(r.active_certificates) > 0 ? 'ACTIVE' : r.any_expired ? 'EXPIRED' : r.any_revoked ? 'REVOKED' : 'NONE',
  next_expiry: r.next_expiry ? iso(r.next_expiry) : null,
  active_certificates: Number(r.active_certificates),
  rotation_pending: Boolean(r.rotation_pending),
});

/** The filters every sort shares, on device_registry d. */
function deviceFilter(q: DeviceListQuery) {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `d.tenant_id = ${p}`, q.tenantId);
  if (q.idPrefix) {
    f.add((p) => `d.device_id COLLATE "C" >= ${p}`, q.idPrefix);
    f.add((p) => `d.device_id COLLATE "C" < ${p}`, prefixUpperBound(q.idPrefix));
  }
  if (q.siteId) f.add((p) => `d.site_id = ${p}`, q.siteId);
  if (q.certificateStatus) f.add((p) => `${DEVICE_STATUS} = ${p}`, q.certificateStatus);
  if (q.rotation) f.raw(pendingRotation(q.rotation === 'pending'));
  return f;
}

const filtered = (q: DeviceListQuery) => Boolean(q.idPrefix || q.siteId || q.certificateStatus || q.rotation || q.expiringBefore);

/**
 * Search and keyset pages of devices, each with its certificates' state (RLS already scopes a
 * tenant transaction). By device id (byte order) or by the soonest ACTIVE expiry. `total` is
 * exact: from the per-tenant counters (migration 012) without filters, else counted.
 */
export async function listDevices(tx: Queryable, q: DeviceListQuery): Promise<DevicePage> {
  const { total, capped } = await countDevices(tx, q);
  await planKeysetPages(tx);
  const page = q.sort === 'expiry' ? await pageByExpiry(tx, q) : await pageById(tx, q);
  return { total, totalCapped: capped, ...page };
}

/** Exact from the counters without filters; with filters counted, up to DEVICE_TOTAL_CAP. */
async function countDevices(tx: Queryable, q: DeviceListQuery): Promise<{ total: number; capped: boolean }> {
  if (!filtered(q)) return { total: await countedRows(tx, [DEVICE_KIND], q.tenantId), capped: false };
  const f = deviceFilter(q);
  if (q.expiringBefore) f.add((p) => `${NEXT_EXPIRY} <= ${p}`, q.expiringBefore);
  const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM (SELECT 1 FROM device_registry d${f.sql()} LIMIT ${f.param(DEVICE_TOTAL_CAP + 1)}) x`, f.params);
  const n = Number(rows[0].n);
  return { total: Math.min(n, DEVICE_TOTAL_CAP), capped: n > DEVICE_TOTAL_CAP };
}

async function pageById(tx: Queryable, q: DeviceListQuery) {
  const f = deviceFilter(q);
  if (q.expiringBefore) f.add((p) => `s.next_expiry <= ${p}`, q.expiringBefore);
  if (q.after) {
    const [tenant, ...device] = q.after.split('/');
    // Within one tenant a plain bound on device_id: the index range starts right there.
    if (q.tenantId === tenant) f.add((p) => `d.device_id COLLATE "C" > ${p}`, device.join('/'));
    else {
      const t = f.param(tenant);
      f.add((p) => `(d.tenant_id > ${t} OR (d.tenant_id = ${t} AND d.device_id COLLATE "C" > ${p}))`, device.join('/'));
    }
  }
  const { rows } = await tx.query(
    `SELECT ${COLUMNS.split(', ').map((c) => `d.${c}`).join(', ')}, ${SUMMARY_COLUMNS}
     FROM device_registry d ${SUMMARY}${f.sql()}
     ORDER BY d.tenant_id, d.device_id COLLATE "C" LIMIT ${f.param(q.limit + 1)}`,
    f.params,
  );
  const devices = rows.slice(0, q.limit).map(toSummary);
  const last = devices[devices.length - 1];
  return { devices, next: rows.length > q.limit && last ? `${last.tenant_id}/${last.device_id}` : null };
}

/** Cursor of the expiry order: `e:<not_after as Postgres prints it, to the microsecond>|<tenant>/<device>`. */
const EXPIRY_CURSOR = /^e:([0-9][0-9 T:.+-]{9,40})\|([^/|]+)\/(.+)$/;

/**
 * By the soonest ACTIVE certificate expiry: a range of the (tenant, not_after, device) index of
 * ACTIVE certificates, keeping each device's soonest certificate only.
 */
async function pageByExpiry(tx: Queryable, q: DeviceListQuery) {
  const f = deviceFilter(q);
  f.raw(`c.status = 'ACTIVE'`);
  if (q.tenantId) f.add((p) => `c.tenant_id = ${p}`, q.tenantId);
  // each device once: by its soonest ACTIVE certificate (one probe of the device's ACTIVE expiry index)
  f.raw(`c.id = (SELECT o.id FROM device_certificates o WHERE o.tenant_id = c.tenant_id AND o.device_id = c.device_id AND o.status = 'ACTIVE'
                 ORDER BY o.not_after, o.id LIMIT 1)`);
  if (q.expiringBefore) f.add((p) => `c.not_after <= ${p}`, q.expiringBefore);
  const cursor = q.after ? EXPIRY_CURSOR.exec(q.after) : null;
  if (q.after && !cursor) return { devices: [], next: null };
  const order = q.tenantId ? 'c.not_after, c.device_id' : 'c.not_after, c.tenant_id, c.device_id';
  if (cursor) {
    const [, at, tenant, device] = cursor;
    if (q.tenantId) f.add((p) => `(c.not_after, c.device_id) > (${f.param(at)}::timestamptz, ${p})`, device);
    else f.add((p) => `(c.not_after, c.tenant_id, c.device_id) > (${f.param(at)}::timestamptz, ${f.param(tenant)}, ${p})`, device);
  }
  const { rows } = await tx.query(
    `SELECT ${COLUMNS.split(', ').map((c) => `d.${c}`).join(', ')}, ${SUMMARY_COLUMNS}, c.not_after::text AS sort_expiry
     FROM device_certificates c
     JOIN device_registry d ON d.tenant_id = c.tenant_id AND d.device_id = c.device_id
     ${SUMMARY}${f.sql()}
     ORDER BY ${order} LIMIT ${f.param(q.limit + 1)}`,
    f.params,
  );
  const devices = rows.slice(0, q.limit).map(toSummary);
  const lastRow = rows[q.limit - 1];
  const next = rows.length > q.limit && lastRow ? `e:${String(lastRow.sort_expiry)}|${String(lastRow.tenant_id)}/${String(lastRow.device_id)}` : null;
  return { devices, next };
}
