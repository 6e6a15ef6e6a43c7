/**
 * Issuance over HTTP on real Postgres, for ec-p256 and rsa-2048, beside the raw Node
 * key-generation rate measured in the same run. Prints certificates/s, p50/p99 latency
 * and the server's event-loop lag (p99, from its own /metrics).
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPair } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cfsslNewcertBody, hasCfssl, legacyKeyFile, opensslIssueRate, pythonIssueRate, pythonWithCryptography, startCfsslServe } from './support/peers.ts';
import pg from 'pg';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, closedLoop as burst, fmt, freePort, percentile, startServer } from './support/server.ts';

const gen = promisify(generateKeyPair);
const DEVICES = 100;

async function rawKeyRate(kind: 'ec' | 'rsa', seconds: number, concurrency: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (Date.now() < until) {
      if (kind === 'ec') await gen('ec', { namedCurve: 'prime256v1' });
      else await gen('rsa', { modulusLength: 2048 });
      n++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / ((performance.now() - start) / 1000);
}

/** The process and its descendants (API_PROCESSES forks them), from /proc. */
function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(parents.get(out[i]) ?? []));
  return out;
}

/** CPU milliseconds (user + system, every thread) a process has used so far; 0 once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, in USER_HZ (100) ticks
  } catch {
    return 0;
  }
}

/** CPU milliseconds so far of the server's processes and of the Postgres backends serving its database, per process. */
export async function serverCpuSnapshot(serverPid: number, admin: pg.Client): Promise<{ node: Map<number, number>; postgres: Map<number, number> }> {
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  return {
    node: new Map(processTree(serverPid).map((pid) => [pid, cpuMs(pid)])),
    postgres: new Map(rows.map((r) => [r.pid, cpuMs(r.pid)])),
  };
}

/**
 * What one burst cost: the server's CPU plus that of the Postgres backends serving its database,
 * whatever the machine's load. Per process, from the first snapshot to the second (a backend
 * started meanwhile counts from 0; one that ended meanwhile, its pool closing an idle
 * connection, is missing from the second and its share of the burst is lost, never negative).
 */
export function serverCpuMs(from: Awaited<ReturnType<typeof serverCpuSnapshot>>, to: Awaited<ReturnType<typeof serverCpuSnapshot>>): { total: number; node: number; postgres: number } {
  const delta = (a: Map<number, number>, b: Map<number, number>) => [...b].reduce((n, [pid, ms]) => n + Math.max(0, ms - (a.get(pid) ?? 0)), 0);
  const node = delta(from.node, to.node);
  const postgres = delta(from.postgres, to.postgres);
  return { total: node + postgres, node, postgres };
}

async function eventLoopP99(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

/** The device's own keys: one EC P-256 key and CSR per bench device (openssl), re-certified for that device only. */
export function deviceCsrs(count: number): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-bench-csr-'));
  return Array.from({ length: count }, (_, i) => {
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${i}.key`), '-subj', `/CN=BENCH-${i}`, '-out', join(dir, `${i}.csr`)], { stdio: 'pipe' });
    return readFileSync(join(dir, `${i}.csr`), 'utf8');
  });
}

const certfleetCsrRequest = (base: string, token: string, csrs: string[]) => (i: number) => ({
  method: 'POST' as const,
  url: `${base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/csr`,
  headers: { authorization: `Bearer ${token}` },
  body: JSON.stringify({ csr_pem: csrs[i % DEVICES], validity_days: 30 }),
});

const certfleetRequest = (base: string, token: string, keyType: string) => (i: number) => ({
  method: 'POST' as const,
  url: `${base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/generate`,
  headers: { authorization: `Bearer ${token}` },
  body: JSON.stringify({ key_type: keyType, validity_days: 30 }),
});

/** One request, retried on a network error (a keep-alive socket the loaded server closed meanwhile). */
async function post(url: string, token: string, body: unknown): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await res.arrayBuffer();
      return res.status;
    } catch (e) {
      if (attempt >= 5) throw e;
    }
  }
}

export async function runIssuanceBench(options: { seconds?: number; processes?: number } = {}) {
  const seconds = options.seconds ?? scaled(10, 3);
  // API_PROCESSES: the service's default (1) unless BENCH_API_PROCESSES says otherwise (node:cluster,
  // one process per core as cfssl's Go runtime uses every core: on this shared 2-core machine two
  // processes cost about twice the CPU per certificate and issued fewer, BENCHMARKS.md, 2026-12-07 16:3x UTC).
  const processes = options.processes ?? 1;
  const db = await benchDatabase();
  const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0', API_PROCESSES: String(processes) }); // capacity, not the per-tenant limit
  const ca = { certPath: join(server.dataDir, 'ca', 'device-ca.crt'), keyPath: join(server.dataDir, 'ca', 'device-ca.key') };
  const python = pythonWithCryptography();
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    const token = server.token('bench');
    for (let d = 0; d < DEVICES; d++) await post(`${server.base}/api/v1/customer/devices`, token, { device_id: `BENCH-${d}` });
    console.log(`\n## Issuance over HTTP (real Postgres, ${availableParallelism()} cores, API_PROCESSES=${processes}, ${seconds} s per burst)`);
    const rawEc = await rawKeyRate('ec', Math.min(3, seconds), 8);
    // BENCH_CASES (comma-separated: ec, csr, rsa): only those rows, for a quicker run by hand.
    const wanted = process.env.BENCH_CASES?.split(',').map((s) => s.trim());
    const withRsa = !wanted || wanted.includes('rsa');
    const rawRsa = withRsa ? await rawKeyRate('rsa', Math.min(8, seconds), 8) : NaN;
    // The cores given to RSA key generation: the pools' threads (KEYGEN_WORKERS, default cores - 1, shared out among the API processes, at least 1 each).
    const keygenWorkers = processes > 1 ? processes * Math.max(1, Math.floor((availableParallelism() - 1) / processes)) : Math.max(1, availableParallelism() - 1);
    const rawRsaPool = withRsa ? await rawKeyRate('rsa', Math.min(8, seconds), keygenWorkers) : NaN;
    console.log(`raw Node key generation (same run): ec-p256 ${fmt(rawEc, 0)} keys/s, rsa-2048 ${fmt(rawRsa)} keys/s (${fmt(rawRsaPool)} keys/s on ${keygenWorkers} thread(s), KEYGEN_WORKERS)`);
    const csrs = deviceCsrs(DEVICES);
    await burst(certfleetRequest(server.base, token, 'ec-p256'), 201, 2, 16); // warm-up
    const rows: (string | number | null)[][] = [];
    const cases = [['ec-p256', 32, rawEc, 'generate'], ['ec-p256', 32, rawEc, 'csr'], ['rsa-2048', 8, rawRsa, 'generate']] as const;
    const caseName = (keyType: string, key: string) => (key === 'csr' ? 'csr' : keyType === 'rsa-2048' ? 'rsa' : 'ec');
    for (const [keyType, concurrency, raw, key] of cases) {
      if (wanted && !wanted.includes(caseName(keyType, key))) continue;
      await eventLoopP99(server.base); // resets the server's lag histogram
      const cpu0 = await serverCpuSnapshot(server.pid, admin);
      const ours = await burst(key === 'csr' ? certfleetCsrRequest(server.base, token, csrs) : certfleetRequest(server.base, token, keyType), 201, seconds, concurrency);
      const cpu = serverCpuMs(cpu0, await serverCpuSnapshot(server.pid, admin));
      const oursCpu = cpu.total / Math.max(1, ours.count);
      // The split: the API processes (HTTP, key, lint, signature, response) and the Postgres backends (the group's statement, its commit).
      const nodeCpu = cpu.node / Math.max(1, ours.count);
      const postgresCpu = cpu.postgres / Math.max(1, ours.count);
      const lag = await eventLoopP99(server.base);
      const openssl = key === 'csr' ? NaN : await opensslIssueRate(ca, keyType, seconds, availableParallelism());
      const py = python && key === 'generate' ? pythonIssueRate(python, ca, keyType, seconds) : NaN;
      let cfssl: Awaited<ReturnType<typeof burst>> | null = null;
      let cfsslCpu = NaN;
      if (hasCfssl()) {
        const serve = await startCfsslServe({ certPath: ca.certPath, keyPath: legacyKeyFile(ca.keyPath, 'ec') }, await freePort());
        try {
          const c0 = cpuMs(serve.pid);
          cfssl =
            key === 'csr'
              ? await burst((i) => ({ method: 'POST', url: `${serve.base}/api/v1/cfssl/sign`, headers: {}, body: JSON.stringify({ certificate_request: csrs[i % DEVICES] }) }), 200, seconds, concurrency)
              : await burst((i) => ({ method: 'POST', url: `${serve.base}/api/v1/cfssl/newcert`, headers: {}, body: cfsslNewcertBody(keyType, i) }), 200, seconds, concurrency);
          cfsslCpu = (cpuMs(serve.pid) - c0) / Math.max(1, cfssl.count);
        } finally {
          await serve.stop();
        }
      }
      const label = key === 'csr' ? `${keyType}, device CSR` : keyType;
      console.log(
        `${label}: certfleet ${fmt(ours.rate)}/s (p50 ${fmt(ours.p50)} ms, p99 ${fmt(ours.p99)} ms, lag p99 ${fmt(lag)} ms, ${ours.errors} errors, ${fmt(oursCpu * 1000, 0)} µs CPU per certificate with Postgres: API processes ${fmt(nodeCpu * 1000, 0)}, Postgres ${fmt(postgresCpu * 1000, 0)}); ` +
          `cfssl ${fmt(cfsslCpu * 1000, 0)} µs CPU per certificate; load ${loadavg()[0].toFixed(1)}; ` +
          `openssl ${fmt(openssl)}/s; python ${fmt(py)}/s; cfssl ${cfssl ? `${fmt(cfssl.rate)}/s` : 'not installed'}; raw keygen ${fmt(raw)}/s`,
      );
      rows.push([
        label,
        processes,
        round(ours.rate),
        round(ours.p50),
        round(ours.p99),
        round(lag),
        ours.errors,
        key === 'csr' ? 'not run (makes its own key)' : round(openssl),
        key === 'csr' ? '-' : ratio(ours.rate, openssl),
        key === 'csr' ? 'not run (makes its own key)' : python ? round(py) : 'no python3 cryptography',
        key === 'csr' || !python ? '-' : ratio(ours.rate, py),
        cfssl ? round(cfssl.rate) : 'cfssl not installed',
        cfssl ? ratio(ours.rate, cfssl.rate) : '-',
        key === 'csr' ? '-' : round(raw),
        keyType === 'rsa-2048' ? `${round(rawRsaPool)} (${keygenWorkers}); ${ratio(ours.rate, rawRsaPool)}` : '-',
        round(oursCpu * 1000, 0),
        `${round(nodeCpu * 1000, 0)} / ${round(postgresCpu * 1000, 0)}`,
        cfssl ? round(cfsslCpu * 1000, 0) : '-',
        cfssl ? ratio(cfsslCpu, oursCpu) : '-',
        round(loadavg()[0], 1),
      ]);
    }
    emitTable({
      id: 'issuance',
      title: 'Issuance per key type over HTTP',
      description:
        `certfleet: \`certfleet api\` on Postgres with API_PROCESSES=${processes} (node:cluster), a keep-alive client (32 requests in flight for EC, 8 for RSA) for ${seconds} s per key type; ` +
        'each certificate is a new key generated server-side, signed, stored with its audit event. openssl: `openssl req -x509 -new -newkey … -CA` ' +
        'per certificate, one process per core. python: the seed\'s approach, `cryptography` in one process (key + certificate in a loop, no HTTP, no database). ' +
        'cfssl: `cfssl serve`, one process, Go\'s default GOMAXPROCS (every core), `POST /api/v1/cfssl/newcert` (key generated server-side, no database) with the same client. ' +
        'Device CSR: `POST …/certificates/csr` with the device\'s own P-256 key (one per device, made by openssl beforehand), against `cfssl serve`\'s `POST /api/v1/cfssl/sign` with the same CSRs. Same EC P-256 CA for all.',
      columns: ['key type', 'API processes', 'certfleet certs/s', 'p50 ms', 'p99 ms', 'event-loop lag p99 ms', 'errors', 'openssl certs/s', 'certfleet / openssl', 'python certs/s', 'certfleet / python', 'cfssl certs/s', 'certfleet / cfssl', 'raw Node keygen keys/s', 'raw RSA keygen on the KEYGEN_WORKERS threads keys/s (threads); certfleet / it', 'certfleet CPU µs per certificate (server + its Postgres backends)', 'of which API processes / Postgres µs', 'cfssl CPU µs per certificate', 'cfssl CPU / certfleet CPU', 'load avg (1 min)'],
      rows,
      notes: [
        'Ratios here are certfleet / peer: above 1x certfleet issues more certificates per second.',
        'CPU per certificate: user + system time of every thread of the process and its children (the API processes) during the burst (/proc), for certfleet plus the Postgres backends of its database, divided by the certificates issued; the client\'s CPU is in neither. On a loaded shared machine the rates follow each process\'s share of the cores (cfssl runs on several OS threads; certfleet\'s HTTP, lint and signing on API_PROCESSES processes, each one thread), the CPU per certificate much less so.',
      ],
    });
    return rows;
  } finally {
    await admin.end();
    await server.stop();
    await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIssuanceBench({
    seconds: process.env.BENCH_SECONDS ? Number(process.env.BENCH_SECONDS) : undefined,
    processes: process.env.BENCH_API_PROCESSES ? Number(process.env.BENCH_API_PROCESSES) : undefined,
  });
}
