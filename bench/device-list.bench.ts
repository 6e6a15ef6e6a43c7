/**
 * Device list and search at fleet scale (not a test), real Postgres, `certfleet api` in a child
 * process over 100,000 devices of one tenant (one certificate each: 10% revoked, 1 in 7 expired,
 * expiries spread over a year; 100 sites; 1,000 devices without a certificate; 200 pending
 * rotations). Each request shape is sent one at a time for a few seconds (a console user's
 * pace): p50 and p99 latency, and the ratio to the plain first page measured in the same run.
 * The statistics are left as a bulk load leaves them (no ANALYZE): the plans must not need them.
 * BENCH_SCALE=small: 10,000 devices.
 *
 *   node --import tsx bench/device-list.bench.ts
 */
import pg from 'pg';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, closedLoop, fmt, startServer } from './support/server.ts';

const DEVICES = scaled(100_000, 10_000);
const SECONDS = scaled(5, 2);
const TENANT = 'bench';

async function load(databaseUrl: string, count: number) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  const now = new Date();
  await pool.query(`ALTER TABLE device_registry SET (autovacuum_enabled = false); ALTER TABLE device_certificates SET (autovacuum_enabled = false)`);
  await pool.query(
    `INSERT INTO device_registry (tenant_id, device_id, site_id, created_at, updated_at)
     SELECT $1, 'dev-' || i, 'site-' || (i % 100), $2, $2 FROM generate_series(1, $3::int + 1000) i`,
    [TENANT, now, count],
  );
  await pool.query(
    `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
       status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at)
     SELECT $1, 'dev-' || i, 'pem', md5(i::text) || md5('fp' || i), $1 || '/dev-' || i, 'CN=bench', '4' || lpad(to_hex(i), 31, '0'), 'ec-p256',
       CASE WHEN i % 10 = 0 THEN 'REVOKED' WHEN i % 7 = 0 THEN 'EXPIRED' ELSE 'ACTIVE' END,
       $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day' * (1 + i % 365),
       CASE WHEN i % 10 = 0 THEN $2::timestamptz END, CASE WHEN i % 10 = 0 THEN 'keyCompromise' END, $2, $2
     FROM generate_series(1, $3::int) i`,
    [TENANT, now, count],
  );
  // 200 pending rotations: a new certificate, the old one scheduled for revocation.
  await pool.query(
    `WITH picked AS (SELECT i FROM generate_series(1, $3::int) i WHERE i % 10 <> 0 AND i % 7 <> 0 ORDER BY i LIMIT 200),
     fresh AS (
       INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
         status, not_before, not_after, created_at, updated_at)
       SELECT $1, 'dev-' || i, 'pem', md5('new' || i) || md5('newfp' || i), $1 || '/dev-' || i, 'CN=bench', '5' || lpad(to_hex(i), 31, '0'), 'ec-p256',
         'ACTIVE', $2::timestamptz, $2::timestamptz + interval '365 days', $2, $2 FROM picked
       RETURNING id, device_id)
     INSERT INTO certificate_rotations (tenant_id, device_id, new_certificate_id, old_certificate_id, scheduled_revoke_at)
     SELECT $1, f.device_id, f.id, o.id, $2::timestamptz + interval '1 day'
     FROM fresh f JOIN device_certificates o ON o.tenant_id = $1 AND o.device_id = f.device_id AND o.id <> f.id`,
    [TENANT, now, count],
  );
  await pool.end();
}

export async function runDeviceListBench() {
  const database = await benchDatabase();
  const driver = createPgDriver(database.url, { max: 1 });
  await migrate(driver);
  await driver.close();
  await load(database.url, DEVICES);
  const server = await startServer('api', database.url);
  try {
    const headers = { authorization: `Bearer ${server.token(TENANT)}` };
    const list = `${server.base}/api/v1/customer/devices?limit=50`;
    const shapes: [string, string][] = [
      ['first page', list],
      ['a page 90% deep (cursor)', `${list}&cursor=${encodeURIComponent(`${TENANT}/dev-90000`)}`],
      ['id prefix (dev-4242)', `${list}&id_prefix=dev-4242`],
      ['id prefix, one device (dev-77777)', `${list}&id_prefix=dev-77777`],
      ['site (1 in 100)', `${list}&site_id=site-42`],
      ['certificate status ACTIVE', `${list}&certificate_status=ACTIVE`],
      ['certificate status REVOKED', `${list}&certificate_status=REVOKED`],
      ['no certificate (1%)', `${list}&certificate_status=NONE`],
      ['expiring within 7 days', `${list}&expiring_within_days=7`],
      ['pending rotation (0.2%)', `${list}&rotation=pending`],
      ['sort by expiry', `${list}&sort=expiry`],
      ['sort by expiry, within 30 days', `${list}&sort=expiry&expiring_within_days=30`],
      ['site and expiring within 30 days', `${list}&site_id=site-42&expiring_within_days=30`],
    ];
    console.log(`\n## Device list and search (certfleet api on Postgres, ${fmt(DEVICES, 0)} devices, no ANALYZE)`);
    const rows: (string | number)[][] = [];
    let baseline = NaN;
    for (const [name, url] of shapes) {
      await closedLoop(() => ({ method: 'GET', url, headers }), 200, 1, 1); // warm-up
      const r = await closedLoop(() => ({ method: 'GET', url, headers }), 200, SECONDS, 1);
      if (Number.isNaN(baseline)) baseline = r.p99;
      console.log(`${name}: p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms (${ratio(r.p99, baseline)} the first page), ${r.count} requests, ${r.errors} errors`);
      rows.push([name, round(r.p50), round(r.p99), ratio(r.p99, baseline), r.count, r.errors]);
    }
    emitTable({
      id: 'device-list',
      title: `Device list and search with ${DEVICES.toLocaleString('en-US')} devices`,
      description:
        `\`certfleet api\` in its own process on Postgres, ${DEVICES.toLocaleString('en-US')} devices of one tenant with their certificates, ` +
        `tables never analyzed. GET /api/v1/customer/devices?limit=50 with each filter, one request at a time for ${SECONDS} s (totals exact). ` +
        'Peer: the unfiltered first page in the same run.',
      columns: ['request', 'p50 ms', 'p99 ms', 'p99 vs first page', 'requests', 'errors'],
      rows,
    });
    const errors = rows.reduce((n, r) => n + Number(r.at(-1)), 0);
    if (errors) throw new Error(`${errors} errors`);
  } finally {
    await server.stop();
    await database.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runDeviceListBench();
}
