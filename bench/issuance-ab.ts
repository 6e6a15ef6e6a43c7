/**
 * Before/after in one run: the EC issuance bursts of bench/issuance.bench.ts (server-generated
 * P-256 key, and the device's CSR; 32 in flight) against two builds of certfleet, interleaved
 * (A B B A ...), each round beside cfssl serve's newcert and sign with the same client, so the
 * machine's load (shared, it moves by the minute) weighs on both alike.
 *
 *   BENCH_CERTFLEET_BIN_A=/path/to/other/checkout/test/support/certfleet-source.js \
 *   node --import tsx bench/issuance-ab.ts [rounds] [seconds]
 *
 * A is that checkout (built), B this one; BENCH_API_PROCESSES (default 1) for both, or
 * BENCH_API_PROCESSES_A for A alone (A this checkout too: one build, one process against two).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import pg from 'pg';
import { cfsslNewcertBody, hasCfssl, legacyKeyFile, startCfsslServe } from './support/peers.ts';
import { benchDatabase, closedLoop, fmt, freePort, startServer } from './support/server.ts';
import { cpuMs, deviceCsrs, serverCpuMs, serverCpuSnapshot } from './issuance.bench.ts';

const rounds = Number(process.argv[2] ?? 2);
const seconds = Number(process.argv[3] ?? 8);
const processes = process.env.BENCH_API_PROCESSES ?? '1';
const processesA = process.env.BENCH_API_PROCESSES_A ?? processes;
const binA = process.env.BENCH_CERTFLEET_BIN_A;
if (!binA) throw new Error('BENCH_CERTFLEET_BIN_A: the other build\'s test/support/certfleet-source.js');
if (!hasCfssl()) throw new Error('cfssl is needed (apt-get install golang-cfssl)');
const DEVICES = 100;
const csrs = deviceCsrs(DEVICES);

/** CPU milliseconds of a process's main thread (the event loop's, with API_PROCESSES=1 the API's), from /proc; 0 once it is gone. */
function mainThreadMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

async function certfleet(label: string, bin: string | undefined) {
  if (bin) process.env.BENCH_CERTFLEET_BIN = bin;
  else delete process.env.BENCH_CERTFLEET_BIN;
  const db = await benchDatabase();
  const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0', API_PROCESSES: label === 'A' ? processesA : processes });
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const out: Record<string, { rate: number; p99: number; node: number; main: number; postgres: number; errors: number }> = {};
  try {
    const token = server.token('bench');
    for (let d = 0; d < DEVICES; d++) {
      await fetch(`${server.base}/api/v1/customer/devices`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ device_id: `BENCH-${d}` }) });
    }
    const generate = (i: number) => ({ method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/generate`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ key_type: 'ec-p256', validity_days: 30 }) });
    const csr = (i: number) => ({ method: 'POST' as const, url: `${server.base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/csr`, headers: { authorization: `Bearer ${token}` }, body: JSON.stringify({ csr_pem: csrs[i % DEVICES], validity_days: 30 }) });
    await closedLoop(generate, 201, 2, 16); // warm-up
    for (const [name, request] of [['ec', generate], ['csr', csr]] as const) {
      const c0 = await serverCpuSnapshot(server.pid, admin);
      const m0 = mainThreadMs(server.pid);
      const r = await closedLoop(request, 201, seconds, 32);
      const m1 = mainThreadMs(server.pid);
      const cpu = serverCpuMs(c0, await serverCpuSnapshot(server.pid, admin));
      out[name] = { rate: r.rate, p99: r.p99, node: (cpu.node * 1000) / r.count, main: ((m1 - m0) * 1000) / r.count, postgres: (cpu.postgres * 1000) / r.count, errors: r.errors };
      console.log(`${label} ${name}: ${fmt(r.rate)}/s p99 ${fmt(r.p99)} ms, CPU µs/cert API ${fmt(out[name].node, 0)} (main thread ${fmt(out[name].main, 0)}) + Postgres ${fmt(out[name].postgres, 0)}, ${r.errors} errors, load ${loadavg()[0].toFixed(1)}`);
    }
    return { out, ca: { certPath: join(server.dataDir, 'ca', 'device-ca.crt'), keyPath: join(server.dataDir, 'ca', 'device-ca.key') } };
  } finally {
    await admin.end();
    await server.stop();
    await db.drop();
  }
}

async function cfssl(ca: { certPath: string; keyPath: string }) {
  const serve = await startCfsslServe({ certPath: ca.certPath, keyPath: legacyKeyFile(ca.keyPath, 'ec') }, await freePort());
  const out: Record<string, { rate: number; p99: number; cpu: number }> = {};
  try {
    for (const name of ['ec', 'csr'] as const) {
      const c0 = cpuMs(serve.pid);
      const r =
        name === 'csr'
          ? await closedLoop((i) => ({ method: 'POST', url: `${serve.base}/api/v1/cfssl/sign`, headers: {}, body: JSON.stringify({ certificate_request: csrs[i % DEVICES] }) }), 200, seconds, 32)
          : await closedLoop((i) => ({ method: 'POST', url: `${serve.base}/api/v1/cfssl/newcert`, headers: {}, body: cfsslNewcertBody('ec-p256', i) }), 200, seconds, 32);
      out[name] = { rate: r.rate, p99: r.p99, cpu: ((cpuMs(serve.pid) - c0) * 1000) / r.count };
      console.log(`cfssl ${name}: ${fmt(r.rate)}/s p99 ${fmt(r.p99)} ms, CPU µs/cert ${fmt(out[name].cpu, 0)}, load ${loadavg()[0].toFixed(1)}`);
    }
  } finally {
    await serve.stop();
  }
  return out;
}

console.log(`A: ${binA}; B: this checkout; API_PROCESSES=${processesA} (A), ${processes} (B); cfssl serve: one process, Go's default GOMAXPROCS (every core); ${seconds} s bursts, 32 in flight`);
const rows: string[] = [];
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const);
  for (const which of order) {
    const ours = await certfleet(which, which === 'A' ? binA : undefined);
    const peer = await cfssl(ours.ca);
    for (const name of ['ec', 'csr'] as const) {
      const o = ours.out[name];
      const p = peer[name];
      rows.push(`| ${round + 1} | ${which} | ${name === 'ec' ? 'generate' : 'device CSR'} | ${fmt(o.rate)} (${fmt(o.p99, 0)} ms) | ${fmt(p.rate)} | ${(o.rate / p.rate).toFixed(2)}x | ${fmt(o.node + o.postgres, 0)} (${fmt(o.node, 0)} / ${fmt(o.postgres, 0)}) | ${fmt(o.main, 0)} | ${fmt(p.cpu, 0)} | ${(p.cpu / (o.node + o.postgres)).toFixed(2)}x | ${loadavg()[0].toFixed(1)} |`);
    }
  }
}
console.log('\n| round | build | EC P-256 | certfleet certs/s (p99) | cfssl certs/s | certfleet / cfssl | certfleet CPU µs/cert (API / Postgres) | API main thread µs/cert | cfssl CPU µs/cert | cfssl CPU / certfleet CPU | load (1 min) |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
