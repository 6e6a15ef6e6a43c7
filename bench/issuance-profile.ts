/**
 * Where an issuance's time goes: `certfleet api` on Postgres under the issuance bench's load
 * (EC P-256, 32 in flight, server-generated key or the device's CSR), with `node --cpu-prof`
 * on the server, and the database's side counted: transactions (pg_stat_database) and round
 * trips (log_statement=all on this throw-away database, one log line per simple query or
 * execute message) per certificate. Prints the top self-time functions grouped by area.
 *
 *   node --import tsx bench/issuance-profile.ts [seconds] [generate|csr]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { benchDatabase, closedLoop, fmt, startServer } from './support/server.ts';

const PG_LOG = '/var/log/postgresql/postgresql-15-main.log';
const seconds = Number(process.argv[2] ?? 10);
const mode = (process.argv[3] ?? 'generate') as 'generate' | 'csr';
const DEVICES = 100;

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }

/** Self time over the samples taken in [from, to] (CLOCK_MONOTONIC µs, as V8's profile and process.hrtime use). */
function summarise(profilePath: string, from: number, to: number, issued: number) {
  const profile = JSON.parse(readFileSync(profilePath, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };
  const self = new Map<string, number>();
  const byArea = new Map<string, number>();
  const hits = new Map<number, number>();
  let t = profile.startTime;
  let total = 0;
  let busyUs = 0;
  const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  profile.samples.forEach((s, i) => {
    const dt = profile.timeDeltas[i];
    t += dt;
    if (t < from || t > to) return;
    total++;
    if (!idleIds.has(s)) busyUs += profile.timeDeltas[i + 1] ?? 0;
    hits.set(s, (hits.get(s) ?? 0) + 1);
  });
  for (const n of profile.nodes) {
    const h = hits.get(n.id) ?? 0;
    if (!h) continue;
    const url = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|dist|src)\//, '$1/');
    const key = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + h);
    const area = n.callFrame.functionName === '(idle)' ? 'idle' :
      n.callFrame.functionName === '(garbage collector)' ? 'gc' :
      url.startsWith('node_modules/') ? url.split('/').slice(1, url.split('/')[1]?.startsWith('@') ? 3 : 2).join('/') :
      url.startsWith('dist/') || url.startsWith('src/') ? url.split('/').slice(0, 2).join('/') :
      url.startsWith('node:') ? url : url === '' ? `native ${n.callFrame.functionName}` : 'other';
    byArea.set(area, (byArea.get(area) ?? 0) + h);
  }
  // Inclusive time (the function and what it called), each function counted once per sample.
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, h] of hits) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at)!;
      if (['(root)', '(idle)', '(program)', '(garbage collector)'].includes(n.callFrame.functionName)) continue;
      const url = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|dist|src)\//, '$1/');
      const key = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + h);
    }
  }
  const pct = (n: number) => `${((100 * n) / total).toFixed(1)}%`;
  console.log(`\nCPU profile of the measured burst: ${total} samples over ${((to - from) / 1e6).toFixed(1)} s; main thread busy ${fmt(busyUs / 1e3, 0)} ms = ${fmt(busyUs / issued, 0)} µs per certificate`);
  console.log('by area (self time):');
  for (const [k, v] of [...byArea].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(v).padStart(6)}  ${k}`);
  console.log('top functions (self time):');
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 30))) console.log(`  ${pct(v).padStart(6)}  ${k}`);
  console.log('top functions (inclusive time):');
  for (const [k, v] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 30))) console.log(`  ${pct(v).padStart(6)}  ${k}`);
}

const db = await benchDatabase();
const dbName = new URL(db.url).pathname.slice(1);
const admin = new pg.Client({ connectionString: db.url });
await admin.connect();
await admin.query(`ALTER DATABASE ${dbName} SET log_statement = 'all'`); // before the server connects: its pool's connections log
const window = { from: 0, to: 0, issued: 1 };
const profDir = mkdtempSync(join(tmpdir(), 'certfleet-prof-'));
const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0' }, ['--cpu-prof', '--cpu-prof-dir', profDir]);
try {
  const token = server.token('bench');
  for (let d = 0; d < DEVICES; d++) {
    await fetch(`${server.base}/api/v1/customer/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ device_id: `BENCH-${d}` }),
    });
  }
  const csrs: string[] = [];
  if (mode === 'csr') {
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-csr-'));
    for (let i = 0; i < 200; i++) {
      execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `k${i}`), '-subj', `/CN=d${i}`, '-out', join(dir, `c${i}`)], { stdio: 'pipe' });
      csrs.push(readFileSync(join(dir, `c${i}`), 'utf8'));
    }
  }
  const request = (i: number) =>
    mode === 'generate'
      ? { method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/generate`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ key_type: 'ec-p256', validity_days: 30 }) }
      : // a CSR's key is certified for one device only: device n always sends CSR n
        { method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/csr`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ csr_pem: csrs[i % DEVICES], validity_days: 30 }) };
  await closedLoop(request, 201, 2, 16); // warm-up
  const xacts = async () => Number((await admin.query<{ n: string }>('SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0].n);
  const logStart = statSync(PG_LOG).size;
  const x0 = await xacts();
  window.from = Number(process.hrtime.bigint() / 1000n);
  const r = await closedLoop(request, 201, seconds, 32);
  window.to = Number(process.hrtime.bigint() / 1000n);
  window.issued = r.count;
  const x1 = await xacts();
  await admin.query(`ALTER DATABASE ${dbName} RESET log_statement`);
  const log = readFileSync(PG_LOG, 'utf8').slice(logStart);
  const lines = log.split('\n').filter((l) => l.includes(`@${dbName} LOG:`) && /LOG:\s+(statement|execute)/.test(l));
  const perKind = new Map<string, number>();
  for (const l of lines) {
    const text = l.replace(/^.*LOG:\s+(statement|execute [^:]*):\s*/, '').slice(0, 70).replace(/\s+/g, ' ');
    perKind.set(text, (perKind.get(text) ?? 0) + 1);
  }
  const issued = r.count;
  console.log(`${mode}: ${fmt(r.rate)} certs/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, ${r.errors} errors, ${issued} issued`);
  console.log(`transactions per certificate: ${fmt((x1 - x0) / issued, 2)}; logged round trips per certificate: ${fmt(lines.length / issued, 2)}`);
  for (const [k, v] of [...perKind].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${fmt(v / issued, 2)}  ${k}`);
} finally {
  await admin.end();
  await server.stop();
  await db.drop();
}
const prof = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(profDir, f));
for (const p of prof) summarise(p, window.from, window.to, window.issued);
