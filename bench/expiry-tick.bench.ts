/**
 * Expiry tick benchmark (not a test), real Postgres: 1,000,000 ACTIVE certificates of which
 * 10,000 expire within 30 days, spread over 100 tenants that each have a webhook.
 *
 *   node --import tsx bench/expiry-tick.bench.ts      (or npm run bench)
 *
 * "ours" = one full expiry tick as the worker runs it: mark-expired + raise-expiry-alerts
 * (set-based statements; they also queue the webhook events). "seed" = the seed's
 * check_expired_certificates + check_expiring_certificates (task 003, Step 3) reimplemented
 * faithfully with node-postgres: one SELECT of the expiring certificates, then per
 * certificate a pooled connection, its two role statements (SET LOCAL outside a transaction:
 * no effect, as in the seed), an existence check and an INSERT (into our fleet_alert
 * columns: the seed's own column list does not exist). Same data, alerts reset in between.
 * Statements are counted by wrapping the clients (BEGIN, SET LOCAL ROLE and COMMIT count).
 */
import pg from 'pg';
import { createMarkExpired } from '../src/app/mark-expired.ts';
import { createRaiseExpiryAlerts } from '../src/app/raise-expiry-alerts.ts';
import { createManualClock } from '../src/domain/clock.ts';
import { createExpiryPolicy } from '../src/domain/expiry-policy.ts';
import { createDatabase } from '../src/storage/database.ts';
import { createStorage } from '../src/storage/repositories.ts';
import type { Driver } from '../src/storage/driver.ts';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, fmt } from './support/server.ts';

const NOW = new Date('2026-06-01T00:00:00Z');

/** Counts the SQL statements a driver runs: the transaction's BEGIN, prelude and COMMIT, and every query. */
function countingDriver(inner: Driver) {
  const counter = { statements: 0 };
  const driver: Driver = {
    kind: inner.kind,
    transaction: (fn, prelude) => {
      counter.statements += 2 + (prelude ? prelude.split(';').filter((s) => s.trim()).length : 0);
      return inner.transaction((tx) => {
        // every method of the transaction (query, exec, cursor, ...) is one statement
        const counted = new Proxy(tx, {
          get(target, key, receiver) {
            const value = Reflect.get(target, key, receiver);
            if (typeof value !== 'function') return value;
            return (...args: unknown[]) => {
              counter.statements++;
              return value.apply(target, args);
            };
          },
        });
        return fn(counted);
      }, prelude);
    },
    close: () => inner.close(),
  };
  return { driver, counter };
}

async function seedData(pool: pg.Pool, total: number, expiring: number) {
  const every = Math.floor(total / expiring);
  const spacing = Math.floor((30 * 86_400 - 120) / expiring); // seconds between expiring certificates, all within 30 days
  const t0 = performance.now();
  await pool.query(
    `INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at)
     SELECT 'tenant-' || ((i / $2) % 100), 'dev-' || i, $1, $1 FROM generate_series(1, $3::int) AS i`,
    [NOW, every, total],
  );
  await pool.query(
    `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
                                      status, not_before, not_after, created_at, updated_at)
     SELECT 'tenant-' || ((i / $2) % 100), 'dev-' || i, '-----BEGIN CERTIFICATE-----(bench)', md5(i::text) || md5('fp' || i),
            'tenant-' || ((i / $2) % 100) || '/dev-' || i, 'CN=bench', to_hex(i), 'ec-p256', 'ACTIVE', $1::timestamptz - interval '300 days',
            CASE WHEN i % $2 = 0 THEN $1::timestamptz + interval '1 minute' + ((i / $2) * $4) * interval '1 second'
                 ELSE $1::timestamptz + interval '45 days' + (i % 31536000) * interval '1 second' END,
            $1, $1
     FROM generate_series(1, $3::int) AS i`,
    [NOW, every, total, spacing],
  );
  await pool.query(
    `INSERT INTO notification_webhooks (tenant_id, url, secret, created_by, created_at, updated_at)
     SELECT 'tenant-' || t, 'https://hooks.example/' || t, 'whsec_bench', 'bench', $1, $1 FROM generate_series(0, 99) AS t`,
    [NOW],
  );
  // What autovacuum does to a table that was not just bulk-loaded: statistics, hint bits, visibility map.
  await pool.query('VACUUM ANALYZE');
  const within = await pool.query(`SELECT count(*)::int AS n FROM device_certificates WHERE status = 'ACTIVE' AND not_after <= $1::timestamptz + interval '30 days'`, [NOW]);
  return { seconds: (performance.now() - t0) / 1000, within30: Number(within.rows[0].n) };
}

const resetAlerts = (pool: pg.Pool) => pool.query('TRUNCATE notification_outbox, fleet_alert RESTART IDENTITY');

/** The seed's worker, statement for statement (see the file comment). */
async function seedTick(pool: pg.Pool, now: Date, warningDays: number) {
  let statements = 0;
  const q = async (client: pg.PoolClient | pg.Pool, sql: string, params?: unknown[]) => {
    statements++;
    return client.query(sql, params);
  };
  // check_expired_certificates
  {
    const conn = await pool.connect();
    try {
      await q(conn, 'SET LOCAL ROLE certfleet_app');
      await q(conn, "SELECT set_config('app.tenant_id', '__system__', true)");
      await q(conn, `UPDATE device_certificates SET status = 'EXPIRED', updated_at = $1 WHERE status = 'ACTIVE' AND not_after < $1`, [now]);
    } finally {
      conn.release();
    }
  }
  // check_expiring_certificates
  const threshold = new Date(now.getTime() + warningDays * 86_400_000);
  let rows: { id: number; tenant_id: string; device_id: string; fingerprint_sha256: string; not_after: Date; common_name: string }[];
  {
    const conn = await pool.connect();
    try {
      await q(conn, 'SET LOCAL ROLE certfleet_app');
      await q(conn, "SELECT set_config('app.tenant_id', '__system__', true)");
      rows = (
        await q(
          conn,
          `SELECT dc.id, dc.tenant_id, dc.device_id, dc.fingerprint_sha256, dc.not_after, dc.common_name
           FROM device_certificates dc
           WHERE dc.status = 'ACTIVE' AND dc.not_after <= $1 AND dc.not_after > $2
           ORDER BY dc.not_after ASC`,
          [threshold, now],
        )
      ).rows;
    } finally {
      conn.release();
    }
  }
  let created = 0;
  for (const row of rows) {
    const daysRemaining = Math.floor((row.not_after.getTime() - now.getTime()) / 86_400_000);
    const conn = await pool.connect();
    try {
      await q(conn, 'SET LOCAL ROLE certfleet_app');
      await q(conn, "SELECT set_config('app.tenant_id', $1, true)", [row.tenant_id]);
      const existing = await q(
        conn,
        `SELECT 1 FROM fleet_alert
         WHERE tenant_id = $1 AND device_id = $2 AND alert_type = 'CERT_EXPIRING'
           AND status IN ('OPEN', 'ACKNOWLEDGED') AND details->>'fingerprint' = $3
         LIMIT 1`,
        [row.tenant_id, row.device_id, row.fingerprint_sha256],
      );
      if (existing.rows.length) continue;
      await q(
        conn,
        `INSERT INTO fleet_alert (tenant_id, device_id, alert_type, fingerprint, severity, status, summary, details)
         VALUES ($1, $2, 'CERT_EXPIRING', $3, 4, 'OPEN', $4, $5::jsonb)`,
        [
          row.tenant_id,
          row.device_id,
          row.fingerprint_sha256,
          `Device certificate expires in ${daysRemaining} days`,
          JSON.stringify({
            fingerprint: row.fingerprint_sha256,
            common_name: row.common_name,
            expires_at: row.not_after.toISOString(),
            days_remaining: daysRemaining,
            message: `Device certificate expires in ${daysRemaining} days`,
          }),
        ],
      );
      created++;
    } finally {
      conn.release();
    }
  }
  return { statements, created, candidates: rows.length };
}

export async function runExpiryTickBench(options: { certificates?: number; expiring?: number } = {}) {
  const total = options.certificates ?? scaled(1_000_000, 100_000);
  const expiring = options.expiring ?? scaled(10_000, 1_000);
  const database = await benchDatabase();
  const { driver, counter } = countingDriver(createPgDriver(database.url));
  const pool = new pg.Pool({ connectionString: database.url, max: 10 });
  pool.on('error', () => undefined);
  try {
    await migrate(driver);
    console.log(`\n## Expiry tick (real Postgres): ${fmt(total, 0)} certificates, ${fmt(expiring, 0)} expiring within 30 days, 100 tenants with a webhook each`);
    const loaded = await seedData(pool, total, expiring);
    console.log(`data loaded in ${fmt(loaded.seconds)} s (${fmt(loaded.within30, 0)} ACTIVE certificates expire within 30 days)`);

    const clock = createManualClock(NOW);
    const storage = createStorage(createDatabase(driver));
    const markExpired = createMarkExpired({ storage, clock });
    const raiseExpiryAlerts = createRaiseExpiryAlerts({ storage, clock, policy: createExpiryPolicy({ warningDays: 30 }) });
    const ours = async () => {
      counter.statements = 0;
      const t0 = performance.now();
      const expired = await markExpired();
      const alerts = await raiseExpiryAlerts();
      return { ms: performance.now() - t0, statements: counter.statements, expired, alerts };
    };

    const first = await ours();
    const outbox = Number((await pool.query('SELECT count(*)::int AS n FROM notification_outbox')).rows[0].n);
    const repeat = await ours(); // the next tick with nothing to change
    await resetAlerts(pool);
    const t0 = performance.now();
    const seed = await seedTick(pool, NOW, 30);
    const seedMs = performance.now() - t0;
    const seedAlerts = Number((await pool.query('SELECT count(*)::int AS n FROM fleet_alert').then((r) => r.rows[0].n)));
    await resetAlerts(pool);
    const second = await ours();
    const worst = Math.max(first.ms, second.ms);

    const line = (name: string, ms: number, statements: number, note: string) =>
      console.log(`${name.padEnd(34)} ${fmt(ms, 0).padStart(8)} ms  ${fmt(statements, 0).padStart(8)} statements  ${note}`);
    line('ours: full tick (run 1)', first.ms, first.statements, `${first.alerts.opened} alerts opened, ${outbox} webhook events queued`);
    line('ours: full tick (run 2, same data)', second.ms, second.statements, `${second.alerts.opened} alerts opened`);
    line('ours: next tick, nothing to do', repeat.ms, repeat.statements, `${repeat.alerts.opened} opened, ${repeat.alerts.escalated} escalated`);
    line('seed: per-certificate algorithm', seedMs, seed.statements, `${seedAlerts} alerts created (of ${seed.candidates} candidates)`);
    console.log(`ratio seed / ours: ${fmt(seedMs / worst)}x slower; statements ${fmt(seed.statements, 0)} vs ${fmt(first.statements, 0)}`);
    console.log(`target: one full tick <= 2000 ms: ${worst <= 2000 ? 'met' : 'NOT met'} (${fmt(worst, 0)} ms)`);
    emitTable({
      id: 'expiry-tick',
      title: 'Expiry tick',
      description:
        `${total.toLocaleString('en-US')} ACTIVE certificates on Postgres, ${expiring.toLocaleString('en-US')} of them expiring within 30 days, 100 tenants with a webhook each. ` +
        'certfleet: one full tick as the worker runs it (mark-expired + expiry alerts, set-based; also queues the webhook events). ' +
        "seed: the seed's per-certificate algorithm (task 003, Step 3) on the same data over a local socket. No other peer: openssl, python and cfssl have no expiry tracking.",
      columns: ['run', 'ms', 'SQL statements', 'seed / this run'],
      rows: [
        ['certfleet, full tick (run 1)', round(first.ms, 0), first.statements, ratio(seedMs, first.ms)],
        ['certfleet, full tick (run 2, same data)', round(second.ms, 0), second.statements, ratio(seedMs, second.ms)],
        ['certfleet, next tick with nothing to change', round(repeat.ms, 0), repeat.statements, ratio(seedMs, repeat.ms)],
        ['seed, per certificate', round(seedMs, 0), seed.statements, '1x'],
      ],
      notes: ["The seed's statements are round trips: every millisecond of network latency adds one millisecond per statement."],
    });
    return { oursMs: worst, seedMs, oursStatements: first.statements, seedStatements: seed.statements };
  } finally {
    await pool.end();
    await driver.close();
    await database.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runExpiryTickBench();
}
