import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PGlite } from '@electric-sql/pglite';
import type { Driver, Queryable, QueryResult } from '../src/storage/driver.ts';
import type { CertificateListQuery, DeviceListQuery } from '../src/app/storage-ports.ts';
import { listCertificates } from '../src/storage/repos/certificates-repo.ts';
import { listDevices } from '../src/storage/repos/devices-repo.ts';
import { listAlerts } from '../src/storage/repos/alerts-repo.ts';
import { DEVICE_TOTAL_CAP } from '../src/domain/device.ts';
import { createTestDatabase, DRIVERS, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const DAY = 86_400_000;

/**
 * `count` certificates (one device each) for `tenant`, in one statement as the operator:
 * every 10th REVOKED, every 7th EXPIRED, not_after spread over a year from `now`; 20 sites.
 */
async function load(database: TestDatabase, tenant: string, count: number, now: Date, prefix = 'dev') {
  await database.db.asOperator(async (tx) => {
    await tx.query(
      `INSERT INTO device_registry (tenant_id, device_id, site_id, created_at, updated_at)
       SELECT $1, $3 || '-' || i, 'site-' || (i % 20), $2, $2 FROM generate_series(1, $4::int) i`,
      [tenant, now, prefix, count],
    );
    await tx.query(
      `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
         status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at)
       SELECT $1, $3 || '-' || i, 'pem', md5($1 || $3 || i) || md5('fp' || $1 || $3 || i), $1 || '/' || $3 || '-' || i, 'CN=test',
         md5($1 || $3 || i), 'ec-p256',
         CASE WHEN i % 10 = 0 THEN 'REVOKED' WHEN i % 7 = 0 THEN 'EXPIRED' ELSE 'ACTIVE' END,
         $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day' * (1 + i % 365),
         CASE WHEN i % 10 = 0 THEN $2::timestamptz END, CASE WHEN i % 10 = 0 THEN 'keyCompromise' END, $2, $2
       FROM generate_series(1, $4::int) i`,
      [tenant, now, prefix, count],
    );
  });
}

/** The counters against a real count, per tenant and status. */
async function expectCountersExact(database: TestDatabase) {
  await database.db.asOperator(async (tx) => {
    const counted = await tx.query(
      `SELECT tenant_id, 'certificate:' || status AS kind, count(*)::int8 AS n FROM device_certificates GROUP BY 1, 2
       UNION ALL SELECT tenant_id, 'device', count(*)::int8 FROM device_registry GROUP BY 1 ORDER BY 1, 2`,
    );
    const kept = await tx.query(`SELECT tenant_id, kind, sum(n)::int8 AS n FROM tenant_row_counts GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2`);
    expect(kept.rows.map((r) => ({ ...r, n: Number(r.n) }))).toEqual(counted.rows.map((r) => ({ ...r, n: Number(r.n) })));
  });
}

/** Every page of a list through the API: the ids in order and each page's total. */
async function walk(t: TestService, tenant: string | null, path: string, key: 'certificates' | 'devices' | 'alerts') {
  const ids: (number | string)[] = [];
  const totals: number[] = [];
  let cursor: string | null = null;
  do {
    const sep: string = path.includes('?') ? '&' : '?';
    const res = await t.call(tenant, 'GET', `${path}${sep}limit=37${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    expect(res.status, res.body).toBe(200);
    totals.push(res.json.total);
    for (const item of res.json[key]) ids.push(key === 'devices' ? item.device_id : item.id);
    cursor = res.json.next_cursor;
  } while (cursor);
  return { ids, totals };
}

// The counters (statement triggers), their row-level security and the API's pages and totals are
// the same SQL on both drivers: on Postgres only (oneDriver), where concurrent transactions can
// race on a counter row; the plans below, which differ by driver, on both.
// CERTFLEET_TEST_ALL_DRIVERS=1 runs these on PGlite too.
describe.each(oneDriver('pg'))('list pages and their exact totals on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    await database.reset();
    const now = t.clock.now();
    await load(database, 'acme', 300, now);
    await load(database, 'other', 120, now);
    // A second batch for acme after other's rows: acme's ids are not one contiguous range.
    await load(database, 'acme', 50, now, 'late');
  }, scaled(120_000));
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('keeps the per-tenant counters equal to a real count through inserts, updates and deletes', async () => {
    await expectCountersExact(database);
    await database.db.asOperator(async (tx) => {
      // a multi-row, multi-tenant status change (as mark-expired does), then one that changes no status
      await tx.query(`UPDATE device_certificates SET status = 'EXPIRED', updated_at = now() WHERE status = 'ACTIVE' AND id % 11 = 0`);
      await tx.query(`UPDATE device_certificates SET updated_at = now() WHERE id % 3 = 0`);
    });
    await expectCountersExact(database);
    // rolled back with its transaction
    await expect(database.db.asOperator(async (tx) => {
      await tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now() WHERE status = 'ACTIVE'`);
      throw new Error('roll back');
    })).rejects.toThrow('roll back'); // not the UPDATE's own failure
    await expectCountersExact(database);
    // as the tenant role, under row-level security
    await database.db.asTenant('acme', async (tx) => {
      await tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('acme', 'tmp-1')`);
      await tx.query(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, not_before, not_after)
         VALUES ('acme', 'tmp-1', 'pem', 'tmp-fp', 'acme/tmp-1', 'CN=test', 'abc', 'ec-p256', now(), now() + interval '1 day')`,
      );
    });
    await expectCountersExact(database);
    await database.db.asOperator(async (tx) => {
      await tx.query(`DELETE FROM device_certificates WHERE device_id = 'tmp-1'`);
      await tx.query(`DELETE FROM device_registry WHERE device_id = 'tmp-1'`);
    });
    await expectCountersExact(database);
  });

  it('a tenant reads only its own counters (row-level security)', async () => {
    const seen = await database.db.asTenant('other', (tx) => tx.query(`SELECT DISTINCT tenant_id FROM tenant_row_counts`));
    expect(seen.rows).toEqual([{ tenant_id: 'other' }]);
  });

  it('concurrent issuance in one tenant neither deadlocks nor loses a count', async () => {
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        database.db.asTenant('acme', async (tx) => {
          await tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('acme', $1)`, [`par-${i}`]);
          await tx.query(
            `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, not_before, not_after)
             VALUES ('acme', $1, 'pem', $1 || '-fp', 'acme/' || $1, 'CN=test', $1, 'ec-p256', now(), now() + interval '400 days')`,
            [`par-${i}`],
          );
        }),
      ),
    );
    await expectCountersExact(database);
  });

  it('walks every page of every certificate filter with the exact total on each page, customer and operator', async () => {
    const expected = async (where: string, params: unknown[] = []) =>
      (await database.db.asOperator((tx) => tx.query<{ id: number }>(`SELECT id FROM device_certificates WHERE ${where} ORDER BY id DESC`, params))).rows.map((r) => Number(r.id));
    const until = new Date(t.clock.now().getTime() + 30 * DAY);
    const cases: [string | null, string, string, unknown[]][] = [
      ['acme', '/customer/certificates', `tenant_id = 'acme'`, []],
      ['acme', '/customer/certificates?status=REVOKED', `tenant_id = 'acme' AND status = 'REVOKED'`, []],
      ['acme', '/customer/certificates?status=EXPIRED', `tenant_id = 'acme' AND status = 'EXPIRED'`, []],
      ['acme', '/customer/certificates?device_id=dev-12', `tenant_id = 'acme' AND device_id = 'dev-12'`, []],
      ['acme', '/customer/certificates?expiring_within_days=30', `tenant_id = 'acme' AND status = 'ACTIVE' AND not_after <= $1`, [until]],
      ['other', '/customer/certificates', `tenant_id = 'other'`, []],
      [null, '/operator/certificates', `true`, []],
      [null, '/operator/certificates?tenant_id=other&status=ACTIVE', `tenant_id = 'other' AND status = 'ACTIVE'`, []],
      [null, '/operator/certificates?expiring_within_days=30', `status = 'ACTIVE' AND not_after <= $1`, [until]],
    ];
    for (const [tenant, path, where, params] of cases) {
      const want = await expected(where, params);
      const got = await walk(t, tenant, path, 'certificates');
      expect(got.ids, path).toEqual(want);
      expect(new Set(got.totals), path).toEqual(new Set([want.length]));
    }
  });

  it('a revocation through the API moves the certificate between the status totals at once', async () => {
    const before = (await t.call('acme', 'GET', '/customer/certificates?status=REVOKED&limit=1')).json.total;
    const active = (await t.call('acme', 'GET', '/customer/certificates?status=ACTIVE&limit=1')).json;
    expect((await t.call('acme', 'POST', `/customer/certificates/${active.certificates[0].id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    expect((await t.call('acme', 'GET', '/customer/certificates?status=REVOKED&limit=1')).json.total).toBe(before + 1);
    expect((await t.call('acme', 'GET', '/customer/certificates?status=ACTIVE&limit=1')).json.total).toBe(active.total - 1);
    await expectCountersExact(database);
  });

  it('device search: every filter and both sorts, walked page by page, list exactly the devices a plain reading of the rows gives', async () => {
    // a device without certificates, two ACTIVE certificates on one device, a pending rotation
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'bare-1', site_id: 'site-3' })).status).toBe(201);
    const rotated = await t.call('acme', 'POST', '/customer/devices/dev-1/certificates/rotate', { key_type: 'ec-p256', validity_days: 3 });
    expect(rotated.status, rotated.body).toBe(201);
    const { rows: certs } = await database.db.asOperator((tx) =>
      tx.query<{ device_id: string; status: string; not_after: Date | string; us: string }>(
        `SELECT device_id, status, not_after, floor(extract(epoch FROM not_after) * 1000000)::int8 AS us FROM device_certificates WHERE tenant_id = 'acme'`,
      ),
    );
    const { rows: devices } = await database.db.asOperator((tx) => tx.query<{ device_id: string; site_id: string | null }>(`SELECT device_id, site_id FROM device_registry WHERE tenant_id = 'acme'`));
    const now = t.clock.now().getTime();
    const model = devices.map((d) => {
      const mine = certs.filter((c) => c.device_id === d.device_id);
      const active = mine.filter((c) => c.status === 'ACTIVE').map((c) => new Date(c.not_after).getTime());
      const activeUs = mine.filter((c) => c.status === 'ACTIVE').map((c) => Number(c.us)); // the order is to the microsecond
      const status = active.length ? 'ACTIVE' : mine.some((c) => c.status === 'EXPIRED') ? 'EXPIRED' : mine.some((c) => c.status === 'REVOKED') ? 'REVOKED' : 'NONE';
      return { ...d, status, next: active.length ? Math.min(...active) : null, nextUs: Math.min(...activeUs), pending: d.device_id === 'dev-1' };
    });
    const byteOrder = (a: string, b: string) => (Buffer.from(a) < Buffer.from(b) ? -1 : 1);
    const ids = (list: typeof model) => list.map((d) => d.device_id).sort(byteOrder);
    const within = (days: number) => (d: (typeof model)[number]) => d.next !== null && d.next <= now + days * DAY;
    const cases: [string, string[]][] = [
      ['', ids(model)],
      ['id_prefix=dev-1', ids(model.filter((d) => d.device_id.startsWith('dev-1')))],
      ['id_prefix=late-4', ids(model.filter((d) => d.device_id.startsWith('late-4')))],
      ['site_id=site-3', ids(model.filter((d) => d.site_id === 'site-3'))],
      ['certificate_status=ACTIVE', ids(model.filter((d) => d.status === 'ACTIVE'))],
      ['certificate_status=EXPIRED', ids(model.filter((d) => d.status === 'EXPIRED'))],
      ['certificate_status=REVOKED', ids(model.filter((d) => d.status === 'REVOKED'))],
      ['certificate_status=NONE', ['bare-1']],
      ['expiring_within_days=30', ids(model.filter(within(30)))],
      ['rotation=pending', ['dev-1']],
      ['site_id=site-3&certificate_status=ACTIVE&expiring_within_days=90', ids(model.filter((d) => d.site_id === 'site-3' && d.status === 'ACTIVE' && within(90)(d)))],
    ];
    for (const [query, want] of cases) {
      const got = await walk(t, 'acme', `/customer/devices?${query}`, 'devices');
      expect(got.ids, query).toEqual(want);
      expect(new Set(got.totals), query).toEqual(new Set([want.length]));
    }
    // By expiry: the soonest ACTIVE expiry first, every device with one exactly once.
    const soonest = model.filter((d) => d.next !== null).sort((a, b) => a.nextUs - b.nextUs || byteOrder(a.device_id, b.device_id));
    for (const [query, want] of [
      ['sort=expiry', soonest],
      ['sort=expiry&expiring_within_days=30', soonest.filter(within(30))],
    ] as const) {
      const got = await walk(t, 'acme', `/customer/devices?${query}`, 'devices');
      expect(got.ids, query).toEqual(want.map((d) => d.device_id));
    }
    // Each listed device carries its state.
    const one = (await t.call('acme', 'GET', '/customer/devices?id_prefix=dev-1&limit=1')).json.devices[0];
    expect(one).toMatchObject({ device_id: 'dev-1', certificate_status: 'ACTIVE', rotation_pending: true, active_certificates: 2, next_expiry: new Date(model.find((d) => d.device_id === 'dev-1')!.next!).toISOString() });
    expect((await t.call('acme', 'GET', '/customer/devices?id_prefix=bare-1')).json.devices[0]).toMatchObject({ certificate_status: 'NONE', next_expiry: null, active_certificates: 0, rotation_pending: false });
    // Another tenant's devices are never found.
    expect((await t.call('other', 'GET', '/customer/devices?id_prefix=bare')).json.total).toBe(0);
    expect((await t.call('acme', 'GET', '/customer/devices?id_prefix=bad%25')).status).toBe(422);
  });

  it('walks the device pages with the exact total', async () => {
    const want = await database.db.asOperator((tx) => tx.query<{ device_id: string }>(`SELECT device_id FROM device_registry WHERE tenant_id = 'other' ORDER BY device_id`));
    const got = await walk(t, 'other', '/customer/devices', 'devices');
    expect(got.ids).toEqual(want.rows.map((r) => r.device_id));
    expect(new Set(got.totals)).toEqual(new Set([want.rows.length]));
  });
});

/** Records every statement a repository function sends, to EXPLAIN exactly those. */
function recording(tx: Queryable, log: { sql: string; params: readonly unknown[] }[]): Queryable {
  return {
    ...tx,
    query: <R,>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> => {
      log.push({ sql, params });
      return tx.query<R>(sql, params);
    },
  };
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Shared Hit Blocks'?: number;
  'Total Cost'?: number;
  'Plan Rows'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}
const nodes = (p: PlanNode): PlanNode[] => [p, ...(p.Plans ?? []).flatMap(nodes)];

const WATCHED_TABLES = ['device_certificates', 'device_registry', 'fleet_alert', 'certificate_rotations'];

describe.each(DRIVERS)('list page plans on %s, with and without table statistics', (kind) => {
  let database: TestDatabase;
  const TENANT_ROWS = 20_000;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    if (kind === 'pg') {
      // as right after a bulk load: no statistics until the ANALYZE below. As the tables' owner
      // (the operator role may not ALTER them), and checked: autovacuum must not decide the plans.
      if (!database.url) throw new Error('a Postgres test database has a URL');
      const owner = new pg.Client({ connectionString: database.url });
      await owner.connect();
      try {
        for (const table of WATCHED_TABLES) await owner.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);
        const { rows } = await owner.query<{ relname: string; reloptions: string[] | null }>(`SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1)`, [WATCHED_TABLES]);
        expect(rows.map((r) => [r.relname, r.reloptions]).sort()).toEqual(WATCHED_TABLES.map((t) => [t, ['autovacuum_enabled=false']]).sort());
      } finally {
        await owner.end();
      }
    }
    const now = new Date();
    await load(database, 'big', TENANT_ROWS, now);
    // another tenant's rows above every one of big's ids: a page that walked the primary key would read them all
    await load(database, 'small', 5_000, now);
    await database.db.asOperator((tx) =>
      tx.query(`INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, summary)
                SELECT tenant_id, device_id, 'CERT_EXPIRING', fingerprint_sha256, 3, 's' FROM device_certificates`),
    );
  }, scaled(300_000));
  afterAll(async () => {
    await database?.close();
  });

  /** Each page query's plan (the statement ending in LIMIT), as the tenant, with its buffer counts. */
  async function pagePlans(run: (tx: Queryable) => Promise<unknown>, scope: 'tenant' | 'operator' = 'tenant'): Promise<PlanNode[]> {
    const inScope = <T,>(fn: (tx: Queryable) => Promise<T>) => (scope === 'tenant' ? database.db.asTenant('big', fn) : database.db.asOperator(fn));
    return inScope(async (tx) => {
      const log: { sql: string; params: readonly unknown[] }[] = [];
      await run(recording(tx, log));
      const plans: PlanNode[] = [];
      for (const q of log.filter((l) => /\bLIMIT\b/.test(l.sql))) {
        const { rows } = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${q.sql}`, q.params);
        const raw = rows[0]['QUERY PLAN'];
        plans.push((typeof raw === 'string' ? JSON.parse(raw) : raw as { Plan: PlanNode }[])[0].Plan);
      }
      return plans;
    });
  }

  const buffers = (plan: PlanNode) => (plan['Shared Hit Blocks'] ?? 0) + (plan['Shared Read Blocks'] ?? 0);

  async function expectKeysetPlans(statistics: string) {
    const ids = await database.db.asOperator((tx) => tx.query<{ lo: number; hi: number }>(`SELECT min(id)::int8 AS lo, max(id)::int8 AS hi FROM device_certificates WHERE tenant_id = 'big'`));
    const deep = Number(ids.rows[0].lo) + 150;
    const list = (q: Partial<CertificateListQuery>) => (tx: Queryable) => listCertificates(tx, { tenantId: 'big', limit: 100, ...q });
    type Case = [string, (tx: Queryable) => Promise<unknown>, string, string];
    const cases: Case[] = [
      ['first page', list({}), 'device_certificates', 'device_certificates_tenant_id'],
      ['deepest page', list({ beforeId: deep }), 'device_certificates', 'device_certificates_tenant_id'],
      ['status, first page', list({ status: 'REVOKED' }), 'device_certificates', 'device_certificates_tenant_status_id'],
      ['status, deepest page', list({ status: 'REVOKED', beforeId: deep }), 'device_certificates', 'device_certificates_tenant_status_id'],
      ['device', list({ deviceId: 'dev-77' }), 'device_certificates', 'device_certificates_tenant_device_id'],
      ['expiring, first page', list({ expiringBefore: new Date(Date.now() + 30 * DAY) }), 'device_certificates', 'device_certificates_tenant_status_id'],
      ['device and status', list({ deviceId: 'dev-77', status: 'ACTIVE' }), 'device_certificates', 'device_certificates_tenant_device_id'],
    ];
    // Devices: every list query (the capped count and the page), each filter alone and combined,
    // both sorts, first and deep pages, a tenant under row-level security and the operator over
    // every tenant, reads device rows only, through an index: never the certificates, never a
    // sequential scan, and never more than one walk of one index (a sort only of the few
    // matches a capped count found, read through its index).
    const soon = (days: number) => new Date(Date.now() + days * DAY);
    const expiryCursor = `e:${new Date(Date.now() + 20 * DAY).toISOString().replace('T', ' ').replace('Z', '+00')}|big/dev-1`;
    const device: [string, Partial<DeviceListQuery>][] = [
      ['first page', {}],
      ['deepest page', { after: 'big/dev-9990' }],
      ['id prefix', { idPrefix: 'dev-1999' }],
      ['id prefix, deep', { idPrefix: 'dev-1', after: 'big/dev-1999' }],
      ['site', { siteId: 'site-3' }],
      ['status ACTIVE', { certificateStatus: 'ACTIVE' }],
      ['status REVOKED, deep', { certificateStatus: 'REVOKED', after: 'big/dev-9990' }],
      ['status NONE', { certificateStatus: 'NONE' }],
      ['expiring within 1 day', { expiringBefore: soon(1) }],
      ['expiring within 30 days', { expiringBefore: soon(30) }],
      ['pending rotation', { rotation: 'pending' }],
      ['no pending rotation', { rotation: 'none' }],
      ['by expiry', { sort: 'expiry' }],
      ['by expiry, within 30 days, deep', { sort: 'expiry', expiringBefore: soon(30), after: expiryCursor }],
      ['site, status EXPIRED', { siteId: 'site-3', certificateStatus: 'EXPIRED' }],
      ['site, expiring within 30 days, by expiry', { siteId: 'site-3', expiringBefore: soon(30), sort: 'expiry' }],
      ['id prefix, expiring within 7 days, no rotation', { idPrefix: 'dev-9', expiringBefore: soon(7), rotation: 'none' }],
      ['status ACTIVE, pending, by expiry', { certificateStatus: 'ACTIVE', rotation: 'pending', sort: 'expiry' }],
    ];
    for (const [scope, tenantId] of [['tenant', 'big'], ['operator', undefined]] as const) {
      for (const [name, q] of device) {
        const plans = await pagePlans((tx) => listDevices(tx, { tenantId, limit: 100, ...q }), scope);
        const label = `devices, ${scope}, ${name} (${statistics})`;
        expect(plans.length, label).toBeGreaterThan(0);
        for (const plan of plans) {
          const all = nodes(plan);
          const shown = `${label}: ${JSON.stringify(all.map((n) => `${n['Node Type']} ${n['Index Name'] ?? n['Relation Name'] ?? ''}`))}`;
          expect(all.some((n) => n['Relation Name'] === 'device_certificates'), shown).toBe(false);
          expect(all.some((n) => ['Seq Scan', 'Bitmap Heap Scan'].includes(n['Node Type'])), shown).toBe(false);
          expect(all.filter((n) => n['Relation Name'] === 'device_registry').length, shown).toBe(1);
          // a sort only over the few matches gathered first (CTE), never over an index walk
          for (const sort of all.filter((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort')) {
            expect(sort.Plans?.map((n) => n['Node Type']), shown).toEqual(['CTE Scan']);
          }
          // A capped total reads at most DEVICE_TOTAL_CAP + 1 index entries. Before any VACUUM (no
          // visibility map: autovacuum is off above) each is also a heap fetch (1,001 of them for the
          // 'id prefix, deep' total), on the same page as the previous one or not depending on where
          // the load's device-summary updates left each row version: 228 buffers in one run of this
          // file, 1,938 in another with the same plan. Three per entry allows for that; a walk of
          // the tenant's 20,000 devices would read more than 20,000.
          expect(buffers(plan), `${shown} read ${buffers(plan)} blocks`).toBeLessThan(3 * (DEVICE_TOTAL_CAP + 1) + 100);
        }
      }
    }
    // Alerts filter on columns no index covers: with statistics, a tenant holding most of the
    // table may get the primary key walked backwards instead (see the report); checked without.
    if (statistics === 'no statistics') {
      cases.push(
        ['alerts, first page', (tx) => listAlerts(tx, { tenantId: 'big', limit: 100 }), 'fleet_alert', 'fleet_alert_tenant_id'],
        ['alerts, deepest page', (tx) => listAlerts(tx, { tenantId: 'big', limit: 100, beforeId: 150 }), 'fleet_alert', 'fleet_alert_tenant_id'],
      );
    }
    const cost: Record<string, number> = {};
    for (const [name, run, table, index] of cases) {
      const plan = (await pagePlans(run)).at(-1)!; // the page (a filtered device total is counted first, also with a LIMIT)
      const all = nodes(plan);
      const label = `${name} (${statistics}): ${JSON.stringify(all.map((n) => `${n['Node Type']} ${n['Index Name'] ?? n['Relation Name'] ?? ''} ${n['Total Cost']} ${n['Plan Rows']}`))}`;
      // the rows of the page may be put in order (limit + 1 of them), the range under the Limit never is
      const limit = all.find((n) => n['Node Type'] === 'Limit');
      expect(limit, label).toBeDefined();
      expect(nodes(limit!).some((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort'), label).toBe(false);
      const scans = nodes(limit!).filter((n) => n['Relation Name'] === table);
      expect(scans.map((n) => n['Index Name']), label).toEqual([index]);
      expect(all.some((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === table), label).toBe(false);
      cost[name] = buffers(limit!);
    }
    // finding a page's rows reads a handful of index blocks at any depth, never the 25,000 rows (hundreds of blocks)
    // (the expiry window skips the ACTIVE certificates outside it: its cost follows the window's share, here 1 in 12, not the depth)
    // (a device page also reads each listed device's certificates and rotations: a few blocks per device)
    for (const name of Object.keys(cost)) expect(cost[name], `${name} (${statistics}) read ${cost[name]} blocks`).toBeLessThan(name.startsWith('expiring') ? 150 : name.startsWith('devices') ? 1000 : 60);
  }

  it('keyset pages are index range scans with no sort, at any depth, before any ANALYZE', async () => {
    await expectKeysetPlans('no statistics');
  });

  it('and the same after ANALYZE', async () => {
    // as the tables' owner (the application roles may not); VACUUM as autovacuum runs it, outside a transaction
    if (database.url) {
      const owner = new pg.Client({ connectionString: database.url });
      await owner.connect();
      await owner.query('VACUUM ANALYZE');
      await owner.end();
    } else {
      await (database.driver as Driver & { db: PGlite }).db.exec('VACUUM ANALYZE');
    }
    const analyzed = await database.driver.transaction((tx) => tx.query(`SELECT reltuples FROM pg_class WHERE relname = 'device_certificates'`));
    expect(Number(analyzed.rows[0].reltuples)).toBe(25_000);
    await expectKeysetPlans('analyzed');
  });

  it('the unfiltered and status totals read counters, not the rows', async () => {
    const log: { sql: string; params: readonly unknown[] }[] = [];
    const page = await database.db.asTenant('big', (tx) => listCertificates(recording(tx, log), { tenantId: 'big', status: 'ACTIVE', limit: 10 }));
    expect(log.some((l) => /count\(\*\)/.test(l.sql))).toBe(false);
    const real = await database.db.asOperator((tx) => tx.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM device_certificates WHERE tenant_id = 'big' AND status = 'ACTIVE'`));
    expect(page.total).toBe(Number(real.rows[0].n));
  });
});
