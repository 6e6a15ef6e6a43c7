import { DEVICE_TOTAL_CAP, prefixUpperBound, type DeviceRecord, type DeviceSummary } from '../../domain/device.ts';
import type { DeviceListQuery, DevicePage } from '../../app/storage-ports.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { iso } from '../rows.ts';
import { createFilter } from '../sql-filter.ts';
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
  return toDevice(onlyRow(rows, 'insert device'));
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

/** A listed device: its record and the certificate summary its row carries (migration 024, kept by triggers). */
const LIST_COLUMNS = `${COLUMNS.split(', ').map((c) => `d.${c}`).join(', ')}, d.cert_status, d.next_expiry, d.active_certificates, d.pending_rotations`;

const toSummary = (r: Record<string, unknown>): DeviceSummary => ({
  ...toDevice(r),
  certificate_status: String(r.cert_status) as DeviceSummary['certificate_status'],
  next_expiry: r.next_expiry ? iso(r.next_expiry) : null,
  active_certificates: Number(r.active_certificates),
  rotation_pending: Number(r.pending_rotations) > 0,
});

/**
 * The filters, on the device row's own columns only. Each is a key column of every list index,
 * so the index checks it on its entries: a page, and a capped count, read the heap only for the
 * devices they return, and no combination costs more than one walk of one index.
 */
function deviceFilter(q: DeviceListQuery, ca: CaFilterMode = 'probe') {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `d.tenant_id = ${p}`, q.tenantId);
  if (q.idPrefix) {
    f.add((p) => `d.device_id COLLATE "C" >= ${p}`, q.idPrefix);
    f.add((p) => `d.device_id COLLATE "C" < ${p}`, prefixUpperBound(q.idPrefix));
  }
  if (q.siteId) f.add((p) => `d.site_id = ${p}`, q.siteId);
  if (q.certificateStatus) f.add((p) => `d.cert_status = ${p}`, q.certificateStatus);
  if (q.expiringBefore) f.add((p) => `d.next_expiry <= ${p}`, q.expiringBefore);
  if (q.rotation === 'pending') f.raw('d.pending_rotations > 0');
  if (q.rotation === 'none') f.raw('d.pending_rotations = 0');
  if (q.sort === 'expiry') f.raw('d.next_expiry IS NOT NULL');
  // The one filter not on the device row (see caFilterMode).
  if (q.caId && ca === 'join') {
    f.add((p) => `(d.tenant_id, d.device_id) IN (SELECT c.tenant_id, c.device_id FROM device_certificates c WHERE c.ca_id = ${p} AND c.status = 'ACTIVE')`, q.caId);
  }
  if (q.caId && ca === 'probe') {
    // A probe per device: the subquery names only the device (its index, not the CA's: without
    // statistics the planner would walk the CA's 77,000 entries for each device), the CA is
    // compared outside it, and OFFSET 0 keeps it from being turned into a join.
    f.add((p) => `${p} = ANY (SELECT c.ca_id FROM device_certificates c WHERE c.tenant_id = d.tenant_id AND c.device_id = d.device_id AND c.status = 'ACTIVE' OFFSET 0)`, q.caId);
  }
  return f;
}

/**
 * The issuing-CA filter is decided by how many ACTIVE certificates the CA has in the scope (an
 * index range of device_certificates_ca_active, counted up to CA_JOIN_MAX):
 * - `join`: at most that many (a new CA early in a rollover, a small tenant's CA): the devices
 *   are looked up from the CA's certificates (primary-key lookups), then filtered and put in
 *   order like any few matches;
 * - `probe`: more (the old CA of a rollover: most devices): the ordered index walk checks each
 *   device's ACTIVE certificates and stops at the page's end (and the capped count at 1,001
 *   matches: with more than CA_JOIN_MAX certificates, after about CA_JOIN_MAX devices at most
 *   per 100,000). Left to the planner without statistics, a join of 77,000 certificates
 *   against the walk took 24 s at 100,000 devices, and a probe through the CA's index 400 s.
 */
const CA_JOIN_MAX = 10 * DEVICE_TOTAL_CAP;
type CaFilterMode = 'join' | 'probe';
async function caFilterMode(tx: Queryable, q: DeviceListQuery): Promise<CaFilterMode> {
  const f = createFilter();
  f.add((p) => `c.ca_id = ${p}`, q.caId);
  f.raw(`c.status = 'ACTIVE'`);
  if (q.tenantId) f.add((p) => `c.tenant_id = ${p}`, q.tenantId);
  const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM (SELECT 1 FROM device_certificates c${f.sql()} LIMIT ${f.param(CA_JOIN_MAX + 1)}) x`, f.params);
  return Number(onlyRow(rows, 'count CA certificates').n) > CA_JOIN_MAX ? 'probe' : 'join';
}

const filtered = (q: DeviceListQuery) => Boolean(q.idPrefix || q.siteId || q.certificateStatus || q.rotation || q.expiringBefore || q.caId);

/** Only a device with an ACTIVE certificate has an expiry: with another status, an expiry window or order lists nothing. */
const empty = (q: DeviceListQuery) => Boolean(q.certificateStatus && q.certificateStatus !== 'ACTIVE' && (q.expiringBefore || q.sort === 'expiry' || q.caId));

/**
 * For the rest of the (list's own) transaction: an ordered index walk whatever the statistics
 * say. Without them (right after a bulk load) the planner guesses a tenant holds a handful of
 * rows and would read the table, or build a bitmap of every match, then sort (or sort each
 * tenant's share of an expiry range).
 */
async function planIndexWalks(tx: Queryable) {
  const off = ['enable_sort', 'enable_seqscan', 'enable_bitmapscan', 'enable_incremental_sort'];
  await tx.query(`SELECT ${off.map((name) => `set_config('${name}', 'off', true)`).join(', ')}`);
}

/**
 * Search and keyset pages of devices, each with its certificates' state (RLS already scopes a
 * tenant transaction). By device id (byte order) or by the soonest ACTIVE expiry. `total` is
 * exact from the per-tenant counters (migration 012) without filters, else counted up to
 * DEVICE_TOTAL_CAP.
 */
export async function listDevices(tx: Queryable, q: DeviceListQuery): Promise<DevicePage> {
  if (empty(q)) return { total: 0, totalCapped: false, devices: [], next: null };
  await planIndexWalks(tx);
  const ca = q.caId ? await caFilterMode(tx, q) : 'probe';
  const { total, capped } = await countDevices(tx, q, ca);
  // Few matches (the capped count found all of them, or at most CA_JOIN_MAX devices of a CA in
  // join mode): they are read through the index the count used and put in order, instead of
  // walking the order's index past every device that does not match.
  const few = filtered(q) && (!capped || (q.caId !== undefined && ca === 'join'));
  const page = q.sort === 'expiry' ? await pageByExpiry(tx, q, few, ca) : await pageById(tx, q, few, ca);
  return { total, totalCapped: capped, ...page };
}

/** The page's rows: an ordered index walk, or (few matches) every match, then ordered. */
async function selectPage(tx: Queryable, f: ReturnType<typeof createFilter>, columns: string, order: string[], limit: number, few: boolean) {
  if (!few) {
    return tx.query(`SELECT ${columns} FROM device_registry d${f.sql()} ORDER BY ${order.map((c) => `d.${c}`).join(', ')} LIMIT ${f.param(limit)}`, f.params);
  }
  await tx.query(`SELECT set_config('enable_sort', 'on', true)`);
  return tx.query(
    `WITH m AS MATERIALIZED (SELECT ${columns} FROM device_registry d${f.sql()}) SELECT * FROM m ORDER BY ${order.join(', ')} LIMIT ${f.param(limit)}`,
    f.params,
  );
}

async function countDevices(tx: Queryable, q: DeviceListQuery, ca: CaFilterMode): Promise<{ total: number; capped: boolean }> {
  if (!filtered(q)) return { total: await countedRows(tx, [DEVICE_KIND], q.tenantId), capped: false };
  const f = deviceFilter({ ...q, sort: undefined }, ca);
  const { rows } = await tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM (SELECT 1 FROM device_registry d${f.sql()} LIMIT ${f.param(DEVICE_TOTAL_CAP + 1)}) x`, f.params);
  const n = Number(onlyRow(rows, 'count devices').n);
  return { total: Math.min(n, DEVICE_TOTAL_CAP), capped: n > DEVICE_TOTAL_CAP };
}

async function pageById(tx: Queryable, q: DeviceListQuery, few: boolean, ca: CaFilterMode) {
  const f = deviceFilter(q, ca);
  if (q.after) {
    const [tenant, ...device] = q.after.split('/');
    // Within one tenant a plain bound on device_id: the index range starts right there.
    if (q.tenantId === tenant) f.add((p) => `d.device_id COLLATE "C" > ${p}`, device.join('/'));
    else f.add((p) => `(d.tenant_id, d.device_id COLLATE "C") > (${f.param(tenant)}, ${p})`, device.join('/'));
  }
  const { rows } = await selectPage(tx, f, LIST_COLUMNS, ['tenant_id', 'device_id COLLATE "C"'], q.limit + 1, few);
  const devices = rows.slice(0, q.limit).map(toSummary);
  const last = devices[devices.length - 1];
  return { devices, next: rows.length > q.limit && last ? `${last.tenant_id}/${last.device_id}` : null };
}

/** Cursor of the expiry order: `e:<next_expiry as Postgres prints it, to the microsecond>|<tenant>/<device>`. */
const EXPIRY_CURSOR = /^e:([0-9][0-9 T:.+-]{9,40})\|([^/|]+)\/(.+)$/;

/** By the soonest ACTIVE certificate expiry: a range of the (tenant,) next_expiry, device index. */
async function pageByExpiry(tx: Queryable, q: DeviceListQuery, few: boolean, ca: CaFilterMode) {
  const f = deviceFilter(q, ca);
  const cursor = q.after ? EXPIRY_CURSOR.exec(q.after) : null;
  if (q.after && !cursor) return { devices: [], next: null };
  const order = q.tenantId ? ['next_expiry', 'device_id COLLATE "C"'] : ['next_expiry', 'tenant_id', 'device_id COLLATE "C"'];
  if (cursor) {
    const [, at, tenant, device] = cursor;
    if (q.tenantId) f.add((p) => `(d.next_expiry, d.device_id COLLATE "C") > (${f.param(at)}::timestamptz, ${p})`, device);
    else f.add((p) => `(d.next_expiry, d.tenant_id, d.device_id COLLATE "C") > (${f.param(at)}::timestamptz, ${f.param(tenant)}, ${p})`, device);
  }
  const { rows } = await selectPage(tx, f, `${LIST_COLUMNS}, d.next_expiry::text AS sort_expiry`, order, q.limit + 1, few);
  const devices = rows.slice(0, q.limit).map(toSummary);
  const lastRow = rows[q.limit - 1];
  const next = rows.length > q.limit && lastRow ? `e:${String(lastRow.sort_expiry)}|${String(lastRow.tenant_id)}/${String(lastRow.device_id)}` : null;
  return { devices, next };
}
