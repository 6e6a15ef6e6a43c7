/**
 * Where a CSR (or server-key) issuance's CPU goes, all threads: `perf record` of `certfleet api`
 * (main thread, libuv's pool, V8's helpers; JS frames through --perf-basic-prof) and of the
 * Postgres backends serving its database, under the issuance bench's load (32 in flight).
 *
 *   node --import tsx bench/issuance-perf.ts [seconds] [generate|csr]
 */
import { execFileSync, spawn } from 'node:child_process';
import pg from 'pg';
import { benchDatabase, closedLoop, fmt, startServer } from './support/server.ts';
import { deviceCsrs, serverCpuMs, serverCpuSnapshot } from './issuance.bench.ts';

const seconds = Number(process.argv[2] ?? 8);
const mode = (process.argv[3] ?? 'csr') as 'generate' | 'csr';
const out = process.argv[4] ?? '/tmp/certfleet-issuance.perf.data';
const DEVICES = 100;
const db = await benchDatabase();
const admin = new pg.Client({ connectionString: db.url });
await admin.connect();
const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0' }, ['--perf-basic-prof-only-functions']);
try {
  const token = server.token('bench');
  for (let d = 0; d < DEVICES; d++) {
    await fetch(`${server.base}/api/v1/customer/devices`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ device_id: `BENCH-${d}` }) });
  }
  const csrs = mode === 'csr' ? deviceCsrs(DEVICES) : [];
  const request = (i: number) =>
    mode === 'generate'
      ? { method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/generate`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ key_type: 'ec-p256', validity_days: 30 }) }
      : { method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/csr`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ csr_pem: csrs[i % DEVICES], validity_days: 30 }) };
  await closedLoop(request, 201, 3, 16); // warm-up
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  const pids = [server.pid, ...rows.map((r) => r.pid)].join(',');
  const perf = spawn('perf', ['record', '-F', '999', '-g', '-o', out, '-p', pids], { stdio: 'inherit' });
  await new Promise((r) => setTimeout(r, 300));
  const c0 = await serverCpuSnapshot(server.pid, admin);
  const r = await closedLoop(request, 201, seconds, 32);
  const c1 = await serverCpuSnapshot(server.pid, admin);
  perf.kill('SIGINT');
  await new Promise((res) => perf.once('exit', res));
  const cpu = serverCpuMs(c0, c1);
  console.log(`${mode}: ${fmt(r.rate)} certs/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, ${r.errors} errors; CPU per certificate ${fmt((cpu.total * 1000) / r.count, 0)} µs (API ${fmt((cpu.node * 1000) / r.count, 0)}, Postgres ${fmt((cpu.postgres * 1000) / r.count, 0)}); server pid ${server.pid}; load ${execFileSync('cat', ['/proc/loadavg']).toString().trim()}`);
} finally {
  await admin.end();
  await server.stop();
  await db.drop();
}
