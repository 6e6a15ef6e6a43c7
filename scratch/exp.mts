import pg from 'pg';
import { createThrowawayDatabase } from '/work/wt/crl/test/support/databases.ts';
import { createPgDriver } from '/work/wt/crl/src/storage/pg-driver.ts';
import { migrate } from '/work/wt/crl/src/storage/migrate.ts';
import { insertRevokedCertificates } from '/work/wt/crl/test/support/bulk-revoked.ts';
const N = Number(process.argv[2] ?? 1000000);
const db = await createThrowawayDatabase('crlx');
try {
  const d = createPgDriver(db.url, { max: 1 });
  await migrate(d);
  await d.transaction((tx) => tx.query('ALTER TABLE device_certificates SET (autovacuum_enabled = false)'));
  const t0 = performance.now();
  await insertRevokedCertificates(d, { count: N, now: new Date() });
  console.log('insert ms', Math.round(performance.now() - t0));
  await d.close();
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  const q = `SELECT serial_number, revoked_at, revoked_reason FROM device_certificates
    WHERE status = 'REVOKED' AND issuer = $1 AND (not_after >= $2 OR revoked_at >= $2)
    ORDER BY issuer, length(serial_number), serial_number`;
  for (const settings of [[], ['enable_seqscan=off','enable_bitmapscan=off','enable_sort=off']]) {
    await c.query('BEGIN');
    for (const s of settings) await c.query('SET LOCAL ' + s);
    const e = await c.query('EXPLAIN ' + q.replace('$1', "'bulk'").replace(/\$2/g, "now()"));
    console.log(settings.join(','), '\n' + e.rows.map((r) => r['QUERY PLAN']).join('\n'));
    const t = performance.now();
    const r = await c.query({ text: q, values: ['bulk', new Date(0)], rowMode: 'array' });
    console.log('rows', r.rows.length, 'ms', Math.round(performance.now() - t));
    await c.query('COMMIT');
  }
  await c.end();
} finally { await db.drop(); }
