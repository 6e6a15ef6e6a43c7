/**
 * Device list and search at fleet scale (not a test), real Postgres, `certfleet api` in a child
 * process. Tenant `bench`: 100,000 devices with 1 to 3 certificates each (170,000: the
 * current one 10% revoked and 1 in 7 expired, expiries spread over a year; every other device
 * also has a superseded, revoked one, every fifth an expired one), 100 sites, 1,000 devices
 * without a certificate, 200 pending rotations; tenant `other`: 20,000 devices alike (the
 * operator's pages span both). Each request shape, as a customer of `bench` (row-level
 * security) or as an operator over every tenant, is sent one at a time (a console user's pace),
 * the shapes interleaved round after round so that a busy moment of the shared machine weighs on
 * all of them alike: p50 and p99 latency, and the ratio to the plain first page measured in the
 * same run (the peer). Never ANALYZE: the plans must not need column statistics (the tables are
 * vacuumed once after the load, as autovacuum would be). BENCH_SCALE=small: 10,000 devices.
 *
 *   node --import tsx bench/device-list.bench.ts
 */
import pg from 'pg';
import type { DeviceListQuery } from '../src/app/storage-ports.ts';
import type { DeviceCertificateStatus, DeviceSort } from '../src/domain/device.ts';
import { createDatabase } from '../src/storage/database.ts';
import { migrate } from '../src/storage/migrate.ts';
import { listDevices } from '../src/storage/repos/devices-repo.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, cli, fmt, keepAliveAgent, percentile, requestStatus, startServer } from './support/server.ts';

const DEVICES = scaled(100_000, 10_000);
const ROUNDS = scaled(300, 50);
const TENANT = 'bench';

export async function loadDeviceFleet(pool: pg.Pool, tenant: string, count: number, now: Date) {
  await pool.query(
    `INSERT INTO device_registry (tenant_id, device_id, site_id, created_at, updated_at)
     SELECT $1, 'dev-' || i, 'site-' || (i % 100), $2, $2 FROM generate_series(1, $3::int + $3::int / 100) i`,
    [tenant, now, count],
  );
  const certificate = (status: string, notAfter: string, serial: string, where: string) =>
    pool.query(
      `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
         status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at)
       SELECT $1, 'dev-' || i, 'pem', md5($1 || '${serial}' || i) || md5('fp${serial}' || $1 || i), $1 || '/dev-' || i, 'CN=bench ' || $1,
         '${serial}' || lpad(to_hex(i), 31, '0'), 'ec-p256', ${status}, $2::timestamptz - interval '400 days', ${notAfter},
         CASE WHEN ${status} = 'REVOKED' THEN $2::timestamptz - interval '30 days' END, CASE WHEN ${status} = 'REVOKED' THEN 'superseded' END, $2, $2
       FROM generate_series(1, $3::int) i WHERE ${where}`,
      [tenant, now, count],
    );
  // the current certificate of every device
  await certificate(`CASE WHEN i % 10 = 0 THEN 'REVOKED' WHEN i % 7 = 0 THEN 'EXPIRED' ELSE 'ACTIVE' END`, `$2::timestamptz + interval '1 day' * (1 + i % 365)`, '4', 'true');
  // a superseded one (revoked) on every other device, an expired one on every fifth
  await certificate(`'REVOKED'`, `$2::timestamptz + interval '10 days'`, '6', 'i % 2 = 0');
  await certificate(`'EXPIRED'`, `$2::timestamptz - interval '35 days'`, '7', 'i % 5 = 1');
  // 200 pending rotations: a new certificate, the old one scheduled for revocation.
  await pool.query(
    `WITH picked AS (SELECT i FROM generate_series(1, $3::int) i WHERE i % 10 <> 0 AND i % 7 <> 0 ORDER BY i LIMIT 200),
     fresh AS (
       INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
         status, not_before, not_after, created_at, updated_at)
       SELECT $1, 'dev-' || i, 'pem', md5('new' || $1 || i) || md5('newfp' || $1 || i), $1 || '/dev-' || i, 'CN=bench ' || $1, '5' || lpad(to_hex(i), 31, '0'), 'ec-p256',
         'ACTIVE', $2::timestamptz, $2::timestamptz + interval '365 days', $2, $2 FROM picked
       RETURNING id, device_id)
     INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at)
     SELECT $1, f.device_id, f.id, o.id, $2::timestamptz + interval '1 day'
     FROM fresh f JOIN device_certificates o ON o.tenant_id = $1 AND o.device_id = f.device_id AND o.id <> f.id AND o.status = 'ACTIVE'`,
    [tenant, now, count],
  );
}

/** CA ids of the issuing-CA filter: the old CA (every certificate), the new one (the 200 rotations' new certificates: an early rollover), one that signed nothing yet. */
export const BENCH_CAS = { old: 'ca_00000000000000a1', next: 'ca_00000000000000b2', unused: 'ca_00000000000000c3' } as const;

/** Mid-rollover: every certificate under the old CA but the pending rotations' new ones, under the new CA (no trigger work: ca_id is not in the device summary). */
export async function assignIssuingCas(pool: pg.Pool) {
  await pool.query(`UPDATE device_certificates SET ca_id = CASE WHEN serial_number LIKE '5%' THEN $2 ELSE $1 END`, [BENCH_CAS.old, BENCH_CAS.next]);
}

/** The storage query a console URL asks for (as src/app/list-devices.ts builds it). */
function storageQuery(url: URL, tenant: string | undefined): DeviceListQuery {
  const p = url.searchParams;
  const days = p.get('expiring_within_days');
  return {
    tenantId: tenant ?? p.get('tenant_id') ?? undefined,
    limit: Number(p.get('limit')),
    after: p.get('cursor') ?? undefined,
    idPrefix: p.get('id_prefix') ?? undefined,
    siteId: p.get('site_id') ?? undefined,
    certificateStatus: (p.get('certificate_status') ?? undefined) as DeviceCertificateStatus | undefined,
    expiringBefore: days === null ? undefined : new Date(Date.now() + Number(days) * 86_400_000),
    rotation: (p.get('rotation') ?? undefined) as 'pending' | 'none' | undefined,
    sort: (p.get('sort') ?? undefined) as DeviceSort | undefined,
    caId: p.get('ca_id') ?? undefined,
  };
}

export async function runDeviceListBench() {
  const database = await benchDatabase();
  const driver = createPgDriver(database.url, { max: 1 });
  await migrate(driver);
  await driver.close();
  const pool = new pg.Pool({ connectionString: database.url, max: 1 });
  const now = new Date();
  await pool.query(`ALTER TABLE device_registry SET (autovacuum_enabled = false); ALTER TABLE device_certificates SET (autovacuum_enabled = false); ALTER TABLE certificate_rotations SET (autovacuum_enabled = false)`);
  await loadDeviceFleet(pool, TENANT, DEVICES, now);
  await loadDeviceFleet(pool, 'other', DEVICES / 5, now);
  await assignIssuingCas(pool);
  // VACUUM (never ANALYZE: no column statistics), as autovacuum does within minutes of a load:
  // the trigger rewrote each device's row after each load statement, and until a vacuum every
  // index still holds each device's first entries (status NONE, no expiry), which a filter on
  // NONE wades through (measured without it: p50 72 ms, p99 246 ms for that shape alone).
  await pool.query('VACUUM device_registry, device_certificates, certificate_rotations');
  const mix = await pool.query(`SELECT cert_status, count(*)::int AS n FROM device_registry WHERE tenant_id = $1 GROUP BY 1 ORDER BY 1`, [TENANT]);
  const certificates = await pool.query(`SELECT count(*)::int AS n FROM device_certificates`);
  const cursorAt = async (order: string, offset: number) => {
    const { rows } = await pool.query(
      `SELECT tenant_id, device_id, next_expiry::text AS at FROM device_registry WHERE tenant_id = $1 AND next_expiry IS NOT NULL ORDER BY ${order} OFFSET $2 LIMIT 1`,
      [TENANT, offset],
    );
    return encodeURIComponent(`e:${rows[0].at}|${rows[0].tenant_id}/${rows[0].device_id}`);
  };
  const deepExpiry = await cursorAt('next_expiry, device_id COLLATE "C"', Math.floor(DEVICES * 0.6));
  await pool.end();
  console.log(`loaded: ${certificates.rows[0].n} certificates; ${TENANT}'s devices by certificate status: ${mix.rows.map((r) => `${r.cert_status} ${r.n}`).join(', ')}`);
  const server = await startServer('api', database.url);
  try {
    const customer = { authorization: `Bearer ${server.token(TENANT)}` };
    const operator = { authorization: `Bearer ${cli(['token', '--role', 'operator', '--ttl', '2h'], server.env)}` };
    const list = `${server.base}/api/v1/customer/devices?limit=50`;
    const all = `${server.base}/api/v1/operator/devices?limit=50`;
    const deep = Math.floor(DEVICES * 0.9);
    const shapes: [string, string, Record<string, string>][] = [
      ['first page', list, customer],
      ['a page 90% deep (cursor)', `${list}&cursor=${encodeURIComponent(`${TENANT}/dev-${deep}`)}`, customer],
      ['id prefix (dev-4242)', `${list}&id_prefix=dev-4242`, customer],
      ['id prefix, one device (dev-77777)', `${list}&id_prefix=dev-77777`, customer],
      ['site (1 in 100)', `${list}&site_id=site-42`, customer],
      ['certificate status ACTIVE', `${list}&certificate_status=ACTIVE`, customer],
      ['certificate status EXPIRED', `${list}&certificate_status=EXPIRED`, customer],
      ['certificate status REVOKED', `${list}&certificate_status=REVOKED`, customer],
      ['certificate status REVOKED, 90% deep', `${list}&certificate_status=REVOKED&cursor=${encodeURIComponent(`${TENANT}/dev-${deep}`)}`, customer],
      ['no certificate (1%)', `${list}&certificate_status=NONE`, customer],
      ['expiring within 1 day (0.2%)', `${list}&expiring_within_days=1`, customer],
      ['expiring within 7 days', `${list}&expiring_within_days=7`, customer],
      ['pending rotation (0.2%)', `${list}&rotation=pending`, customer],
      ['no pending rotation', `${list}&rotation=none`, customer],
      ['sort by expiry', `${list}&sort=expiry`, customer],
      ['sort by expiry, 60% deep (cursor)', `${list}&sort=expiry&cursor=${deepExpiry}`, customer],
      ['sort by expiry, within 30 days', `${list}&sort=expiry&expiring_within_days=30`, customer],
      ['site and expiring within 30 days', `${list}&site_id=site-42&expiring_within_days=30`, customer],
      ['site and expiring within 30 days, by expiry', `${list}&site_id=site-42&expiring_within_days=30&sort=expiry`, customer],
      ['site and status REVOKED', `${list}&site_id=site-42&certificate_status=REVOKED`, customer],
      ['site and pending rotation (none match)', `${list}&site_id=site-42&rotation=pending`, customer],
      ['id prefix dev-1 and status EXPIRED', `${list}&id_prefix=dev-1&certificate_status=EXPIRED`, customer],
      ['id prefix dev-9 and expiring within 1 day', `${list}&id_prefix=dev-9&expiring_within_days=1`, customer],
      ['id prefix dev-1, pending rotation, by expiry', `${list}&id_prefix=dev-1&rotation=pending&sort=expiry`, customer],
      ['status ACTIVE, within 7 days, no rotation, by expiry', `${list}&certificate_status=ACTIVE&expiring_within_days=7&rotation=none&sort=expiry`, customer],
      ['issuing CA: the old one (most devices)', `${list}&ca_id=${BENCH_CAS.old}`, customer],
      ['issuing CA: the new one (0.2%, early rollover)', `${list}&ca_id=${BENCH_CAS.next}`, customer],
      ['issuing CA: one that signed nothing (none match)', `${list}&ca_id=${BENCH_CAS.unused}`, customer],
      ['issuing CA: the old one, by expiry', `${list}&ca_id=${BENCH_CAS.old}&sort=expiry`, customer],
      ['operator: first page, every tenant', all, operator],
      ['operator: a page 90% deep, every tenant', `${all}&cursor=${encodeURIComponent(`${TENANT}/dev-${deep}`)}`, operator],
      ['operator: by expiry, every tenant', `${all}&sort=expiry`, operator],
      ['operator: expiring within 7 days, every tenant', `${all}&expiring_within_days=7`, operator],
      ['operator: status REVOKED, every tenant', `${all}&certificate_status=REVOKED`, operator],
      ['operator: pending rotation, every tenant', `${all}&rotation=pending`, operator],
      ['operator: one tenant, site and status ACTIVE', `${all}&tenant_id=other&site_id=site-7&certificate_status=ACTIVE`, operator],
      ['operator: issuing CA, the new one, every tenant', `${all}&ca_id=${BENCH_CAS.next}`, operator],
      ['operator: one tenant, by expiry within 30 days', `${all}&tenant_id=${TENANT}&sort=expiry&expiring_within_days=30`, operator],
    ];
    console.log(`\n## Device list and search (certfleet api on Postgres, ${fmt(DEVICES, 0)} devices, no ANALYZE)`);
    const rows: (string | number)[][] = [];
    // Interleaved: one request of each shape per round, for ROUNDS rounds (after a warm-up round),
    // so a busy moment of the machine weighs on every shape alike and the ratios stay fair.
    const agent = keepAliveAgent(1);
    const latencies: number[][] = shapes.map(() => []);
    const errors = shapes.map(() => 0);
    for (let round = -1; round < ROUNDS; round++) {
      for (const [i, [, url, headers]] of shapes.entries()) {
        const t0 = performance.now();
        const status = await requestStatus(agent, 'GET', url, headers);
        if (round < 0) continue;
        if (status === 200) latencies[i].push(performance.now() - t0);
        else errors[i]++;
      }
    }
    agent.destroy();
    // The same shapes through the storage layer in this process (the list's SQL in its
    // transaction, without HTTP, authentication and JSON): what the database part costs.
    const driver = createPgDriver(database.url, { max: 1 });
    const db = createDatabase(driver);
    const inDb: number[][] = shapes.map(() => []);
    for (let round = -1; round < ROUNDS / 3; round++) {
      for (const [i, [, url, headers]] of shapes.entries()) {
        const q = storageQuery(new URL(url), headers === customer ? TENANT : undefined);
        const t0 = performance.now();
        if (headers === customer) await db.asTenant(TENANT, (tx) => listDevices(tx, q));
        else await db.asOperator((tx) => listDevices(tx, q));
        if (round >= 0) inDb[i].push(performance.now() - t0);
      }
    }
    await driver.close();
    const dbStats = inDb.map((l) => {
      const sorted = [...l].sort((a, b) => a - b);
      return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
    });
    const stats = latencies.map((l) => {
      const sorted = [...l].sort((a, b) => a - b);
      return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), count: sorted.length };
    });
    const baseline = stats[0].p99;
    for (const [i, [name]] of shapes.entries()) {
      const r = stats[i];
      const d = dbStats[i];
      console.log(
        `${name}: p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms (${ratio(r.p99, baseline)} the first page), ${r.count} requests, ${errors[i]} errors; storage layer p50 ${fmt(d.p50)} ms, p99 ${fmt(d.p99)} ms`,
      );
      rows.push([name, round(r.p50), round(r.p99), ratio(r.p99, baseline), round(d.p50), round(d.p99), r.count, errors[i]]);
    }
    emitTable({
      id: 'device-list',
      title: `Device list and search with ${DEVICES.toLocaleString('en-US')} devices`,
      description:
        `\`certfleet api\` in its own process on Postgres, ${DEVICES.toLocaleString('en-US')} devices of one tenant (and ${(DEVICES / 5).toLocaleString('en-US')} of another) ` +
        `with ${certificates.rows[0].n.toLocaleString('en-US')} certificates, tables vacuumed once after the load and never analyzed. GET /api/v1/customer/devices?limit=50 (row-level security) ` +
        `and /api/v1/operator/devices?limit=50 with each filter, one request at a time, the shapes interleaved (${ROUNDS} rounds of one request each). ` +
        'Peer: the unfiltered first page in the same run. Storage layer: the same query through listDevices in the benchmark process (its transaction, no HTTP), ' +
        `${ROUNDS / 3} interleaved rounds.`,
      columns: ['request', 'p50 ms', 'p99 ms', 'p99 vs first page', 'storage layer p50 ms', 'storage layer p99 ms', 'requests', 'errors'],
      rows,
    });
    const failed = rows.reduce((n, r) => n + Number(r.at(-1)), 0);
    if (failed) throw new Error(`${failed} errors`);
  } finally {
    await server.stop();
    await database.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runDeviceListBench();
}
