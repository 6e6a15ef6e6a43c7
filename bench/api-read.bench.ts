/**
 * API read throughput (not a test), real Postgres, `certfleet api` in a child process over
 * 100,000 certificates of one tenant (10% of them revoked, so the CRL lists 10,000 entries):
 * for the list, get and CRL endpoints, the most requests/s a keep-alive client gets (16 in
 * flight), then a fixed 500 requests/s for 60 s (open loop: requests are sent on schedule
 * whether or not earlier ones have answered) with its p99 and error count.
 * BENCH_SCALE=small: 10,000 certificates, 100 requests/s for 10 s.
 *
 *   node --import tsx bench/api-read.bench.ts      (or npm run bench)
 */
import pg from 'pg';
import { migrate } from '../src/storage/migrate.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { crlEntryCount } from './support/peers.ts';
import { emitTable, round, scaled } from './support/results.ts';
import { benchDatabase, cli, closedLoop, fmt, keepAliveAgent, percentile, requestStatus, startServer } from './support/server.ts';

const CERTIFICATES = scaled(100_000, 10_000);
const RATE = scaled(500, 100);
const RATE_SECONDS = scaled(60, 10);
const MAX_SECONDS = scaled(10, 3);
const TENANT = 'bench';

/** The most requests/s with `concurrency` in flight. */
const maxThroughput = (url: (i: number) => string, headers: Record<string, string>, seconds: number, concurrency = 16) =>
  closedLoop((i) => ({ method: 'GET', url: url(i), headers }), 200, seconds, concurrency);

/** Open loop: `rate` requests/s for `seconds`, each sent on schedule; latency from its scheduled time. */
async function fixedRate(url: (i: number) => string, headers: Record<string, string>, rate: number, seconds: number) {
  const agent = keepAliveAgent(256);
  const total = rate * seconds;
  const latencies: number[] = [];
  let errors = 0;
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  for (let sent = 0; sent < total; ) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    for (; sent < due; sent++) {
      const scheduled = start + (sent / rate) * 1000;
      inFlight.push(
        requestStatus(agent, 'GET', url(sent), headers).then((status) => {
          if (status === 200) latencies.push(performance.now() - scheduled);
          else errors++;
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(inFlight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors, achieved: total / ((performance.now() - start) / 1000) };
}

async function load(databaseUrl: string, count: number) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  const now = new Date();
  await pool.query(
    `INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at)
     SELECT $1, 'dev-' || i, $2, $2 FROM generate_series(1, $3::int) i`,
    [TENANT, now, count],
  );
  // issuer: startServer's CA (init-ca's default CN), since a CRL lists only its own CA's certificates.
  await pool.query(
    `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
       status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at)
     SELECT $1, 'dev-' || i, '-----BEGIN CERTIFICATE-----(bench)', md5(i::text) || md5('fp' || i), $1 || '/dev-' || i, 'certfleet Device CA',
       '4' || lpad(to_hex(i), 31, '0'), 'ec-p256', CASE WHEN i % 10 = 0 THEN 'REVOKED' ELSE 'ACTIVE' END,
       $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day' * (1 + i % 365),
       CASE WHEN i % 10 = 0 THEN $2::timestamptz - interval '1 hour' END, CASE WHEN i % 10 = 0 THEN 'keyCompromise' END, $2, $2
     FROM generate_series(1, $3::int) i`,
    [TENANT, now, count],
  );
  await pool.query('VACUUM ANALYZE device_certificates');
  const { rows } = await pool.query('SELECT min(id)::int AS lo, max(id)::int AS hi FROM device_certificates');
  await pool.end();
  return rows[0] as { lo: number; hi: number };
}

export async function runApiReadBench() {
  const database = await benchDatabase();
  const driver = createPgDriver(database.url, { max: 1 });
  await migrate(driver);
  await driver.close();
  const ids = await load(database.url, CERTIFICATES);
  const server = await startServer('api', database.url);
  try {
    cli(['worker', '--once'], server.env); // publishes the CRL the API serves
    const auth = { authorization: `Bearer ${server.token(TENANT)}` };
    const crlEntries = crlEntryCount(new Uint8Array(await (await fetch(`${server.base}/pki/crl`)).arrayBuffer()));
    const span = ids.hi - ids.lo + 1;
    const endpoints: [string, (i: number) => string, Record<string, string>][] = [
      ['GET /certificates?limit=100 (list)', () => `${server.base}/api/v1/customer/certificates?limit=100`, auth],
      ['GET /certificates/{id} (get)', (i) => `${server.base}/api/v1/customer/certificates/${ids.lo + ((i * 7919) % span)}`, auth],
      ['GET /pki/crl (public CRL, DER)', () => `${server.base}/pki/crl`, {}],
      ['GET /customer/crl (PEM, authenticated)', () => `${server.base}/api/v1/customer/crl`, auth],
    ];
    console.log(`\n## API read throughput (certfleet api on Postgres, ${fmt(CERTIFICATES, 0)} certificates, ${fmt(CERTIFICATES / 10, 0)} revoked)`);
    const rows: (string | number)[][] = [];
    for (const [name, url, headers] of endpoints) {
      await maxThroughput(url, headers, 1); // warm-up
      const max = await maxThroughput(url, headers, MAX_SECONDS);
      const fixed = await fixedRate(url, headers, RATE, RATE_SECONDS);
      console.log(`${name}: ${fmt(max.rate)} req/s (p99 ${fmt(max.p99)} ms); at ${RATE}/s for ${RATE_SECONDS} s: p50 ${fmt(fixed.p50)} ms, p99 ${fmt(fixed.p99)} ms, ${fixed.errors} errors`);
      rows.push([name, round(max.rate), round(max.p99), round(fixed.achieved), round(fixed.p50), round(fixed.p99), max.errors + fixed.errors]);
    }
    emitTable({
      id: 'api-read',
      title: `API read throughput with ${CERTIFICATES.toLocaleString('en-US')} certificates`,
      description:
        `\`certfleet api\` in its own process on Postgres, ${CERTIFICATES.toLocaleString('en-US')} certificates of one tenant (10% revoked; the CRL served lists ` +
        `${crlEntries.toLocaleString('en-US')} entries). Most requests/s: a keep-alive client with 16 requests in flight for ${MAX_SECONDS} s. ` +
        `Then ${RATE} requests/s for ${RATE_SECONDS} s, open loop (latency counted from each request's scheduled time). No peer: openssl, the seed's ` +
        'Python approach and cfssl have no read API over a certificate inventory; the client runs on the same 2 cores.',
      columns: ['endpoint', 'most requests/s', 'p99 ms at most', `achieved requests/s (target ${RATE})`, `p50 ms at ${RATE}/s`, `p99 ms at ${RATE}/s`, 'errors'],
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
  await runApiReadBench();
}
