/**
 * Revocation → broker refusal (not a test), with a real Mosquitto and certfleet on Postgres, at
 * 0, 100,000 and 1,000,000 revoked certificates already listed in the CRL
 * (BENCH_SCALE=small: 0 and 10,000). For each size: `certfleet broker-config` writes the
 * broker's files, Mosquitto runs them as written, certfleet runs with the BROKER_PID_FILE it
 * printed; then each of N fresh certificates is revoked over the API and a TLS client
 * connects again and again until the broker refuses it (TLS alert 44, "certificate revoked"):
 * p50 and p99 of revoke call → first refusal. The broker's own reload time for a CRL that
 * size: SIGHUP → the first accepted connection, less an ordinary connection's time (Mosquitto
 * reloads on its one thread, so a connection waits for the reload), median of 3. In the capath
 * layout (broker-config's default since issue 22: placeholder crlfile, CRLs looked up in
 * `<CRL_OUTPUT_PATH>.hash/`), that first connection also carries the CRL's lazy load at its
 * handshake, so the figure stays "SIGHUP → a device can connect again"; the same figure for the
 * single-crlfile layout, for the same CRL file, is measured in the same run by a second Mosquitto
 * with `crlfile CRL_OUTPUT_PATH` (BENCH_REFUSAL_OLD_RELOAD=0 skips it).
 * BENCH_BROKER_CRL_LAYOUT=crlfile runs the whole measurement in the old layout.
 * No peer: openssl, the seed's Python approach and cfssl do not reload a broker.
 * Topic access: the certfleet_acl plugin by default (the deployed configuration), or an acl_file
 * with one block per registered device with BENCH_BROKER_ACL=file (bench/support/broker-acl-mode.ts).
 *
 *   node --import tsx bench/broker-refusal.bench.ts      (or npm run bench)
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { RENDER_OPTIONS_FILE } from '../src/broker/broker-files.ts';
import type { MosquittoConfigOptions } from '../src/broker/mosquitto-config.ts';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { crlPemToDer } from '../src/crl/verify-crl.ts';
import { crlEntryCount } from './support/peers.ts';
import { brokerTestFixture, closeBrokerTest, runBrokerConfig } from '../test/support/broker-fixture.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { freePort, startMosquitto } from '../test/support/mosquitto.ts';
import { tlsOptions } from '../test/support/mqtt-clients.ts';
import { startTestService } from '../test/support/service.ts';
import { emitTable, round, scaled } from './support/results.ts';
import { fmt, percentile } from './support/server.ts';
import { benchAclArgs, benchAclLabel } from './support/broker-acl-mode.ts';
import { createLogger } from '../src/support/logger.ts';

const SIZES = process.env.BENCH_REFUSAL_SIZES?.split(',').filter(Boolean).map(Number) ?? scaled([0, 100_000, 1_000_000], [0, 10_000]);
const REVOCATIONS = scaled(20, 6);
/** BENCH_BROKER_GLIBC_TUNABLES: Mosquitto's GLIBC_TUNABLES (e.g. the README's malloc settings); only the broker's. */
const BROKER_ENV = process.env.BENCH_BROKER_GLIBC_TUNABLES ? { GLIBC_TUNABLES: process.env.BENCH_BROKER_GLIBC_TUNABLES } : undefined;
const LAYOUT = process.env.BENCH_BROKER_CRL_LAYOUT === 'crlfile' ? 'crlfile' : 'capath';
const OLD_RELOAD = LAYOUT === 'capath' && process.env.BENCH_REFUSAL_OLD_RELOAD !== '0';
const TENANT = 'bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** CPU time (user + system, ms) a process has used so far (/proc/PID/stat, 10 ms steps). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

interface Files {
  port: number;
  cafile: string;
  cert: string;
  key: string;
}

async function connect(files: Files): Promise<'accepted' | 'revoked' | string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${files.port}`, { ...tlsOptions(files), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 30_000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

/** SIGHUP → first accepted connection less an ordinary connection (median of 3), and the broker's CPU over it. */
async function measureReload(broker: { pid: number; logs(): string; waitForLog(p: RegExp, ms?: number, from?: number): Promise<void> }, good: Files) {
  const baseline: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    if ((await connect(good)) !== 'accepted') throw new Error('a valid certificate was refused');
    baseline.push(performance.now() - t0);
  }
  const connectMs = baseline.sort((a, b) => a - b)[2]!;
  const reloads: number[] = [];
  const reloadCpu: number[] = [];
  for (let i = 0; i < 3; i++) {
    const offset = broker.logs().length;
    const cpu0 = cpuMsOf(broker.pid);
    const t0 = performance.now();
    process.kill(broker.pid, 'SIGHUP');
    // The handshake is served by the broker's one thread after the reload that the signal started.
    if ((await connect(good)) !== 'accepted') throw new Error('a valid certificate was refused after a reload');
    reloads.push(Math.max(0, performance.now() - t0 - connectMs));
    reloadCpu.push(cpuMsOf(broker.pid) - cpu0); // the reload and one handshake
    await broker.waitForLog(/Reloading config/, 60_000, offset);
  }
  // The CPU split: the reload alone (SIGHUP, until the broker's CPU time stops growing), then the first handshake after it.
  const aloneCpu: number[] = [];
  const firstHandshakeCpu: number[] = [];
  for (let i = 0; i < 3; i++) {
    const offset = broker.logs().length;
    const cpu0 = cpuMsOf(broker.pid);
    process.kill(broker.pid, 'SIGHUP');
    await broker.waitForLog(/Reloading config/, 60_000, offset);
    let last = -1;
    for (let now = cpuMsOf(broker.pid); now !== last; now = cpuMsOf(broker.pid)) {
      last = now;
      await sleep(150);
    }
    aloneCpu.push(last - cpu0);
    if ((await connect(good)) !== 'accepted') throw new Error('a valid certificate was refused after a reload');
    firstHandshakeCpu.push(cpuMsOf(broker.pid) - last);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[1]!;
  return { connectMs, reloadMs: median(reloads), reloadCpuMs: median(reloadCpu), reloadAloneCpuMs: median(aloneCpu), firstHandshakeCpuMs: median(firstHandshakeCpu) };
}

/** The same CRL file as the broker's `crlfile` (the layout before issue 22), in a second Mosquitto: its reload. */
async function measureOldLayoutReload(brokerDir: string, crlPath: string, tmp: string, good: Files) {
  const dir = join(tmp, 'broker-crlfile');
  mkdirSync(join(dir, 'run'), { recursive: true });
  chmodSync(join(dir, 'run'), 0o777); // Mosquitto writes its pid there as its own user
  const options = JSON.parse(readFileSync(join(brokerDir, RENDER_OPTIONS_FILE), 'utf8')) as MosquittoConfigOptions;
  delete options.crlHashDir;
  options.crlFile = crlPath;
  options.pidFile = join(dir, 'run', 'mosquitto.pid');
  writeFileSync(join(dir, RENDER_OPTIONS_FILE), JSON.stringify(options));
  const old = await startMosquitto({ configDir: dir, startTimeoutMs: 300_000, logTypes: ['information'], env: BROKER_ENV });
  try {
    if (!readFileSync(old.configFile, 'utf8').includes(`crlfile ${crlPath}`)) throw new Error('the old-layout broker does not read the CRL file');
    return await measureReload(old, { ...good, port: old.port });
  } finally {
    await old.stop();
  }
}

export async function measureSize(revokedAlready: number) {
  const fixture = await brokerTestFixture('bench');
  const { tmp, database } = fixture;
  try {
    // The CRL lists only its own CA's certificates: issuer is the CA's CN, as issued ones have it.
    if (revokedAlready) {
      await insertRevokedCertificates(database.driver, { count: revokedAlready, now: new Date(), devices: Math.min(10_000, revokedAlready), issuer: 'certfleet bench Device CA' });
    }
    const port = await freePort();
    const brokerConfig = runBrokerConfig(fixture.env, join(tmp, 'broker'), ['--port', String(port), '--no-kick', '--crl-layout', LAYOUT, ...benchAclArgs()]);
    const broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true, startTimeoutMs: 300_000, env: BROKER_ENV });
    // back-to-back revocations: without the large-CRL reload bound (BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS), as measured before it existed
    const env: Record<string, string> = { ...fixture.env, ...brokerConfig.env, BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS: '0' };
    const t = await startTestService(database, { dataDir: join(tmp, 'data'), env, overrides: { logger: createLogger({ level: 'warn', destination: { write: () => undefined } }) } });
    try {
      expect201(await t.call(TENANT, 'POST', '/customer/devices', { device_id: 'BENCH-1' }));
      const certs: { id: number; files: Files }[] = [];
      for (let i = 0; i < REVOCATIONS + 1; i++) {
        const r = await t.call(TENANT, 'POST', '/customer/devices/BENCH-1/certificates/generate', { key_type: 'ec-p256' });
        expect201(r);
        const cert = join(tmp, 'certs', `${i}.crt`);
        const key = join(tmp, 'certs', `${i}.key`);
        writeFileSync(cert, r.json.cert_pem);
        writeFileSync(key, r.json.private_key_pem, { mode: 0o600 });
        certs.push({ id: r.json.certificate.id, files: { port: broker.port, cafile: brokerConfig.files.combinedCa, cert, key } });
      }
      const good = certs.pop()!;
      const crlEntries = crlEntryCount(crlPemToDer(readFileSync(env.CRL_OUTPUT_PATH, 'latin1')));

      // The broker's own reload time for a CRL this size (capath: with the first handshake's lazy CRL load).
      const reload = await measureReload(broker, good.files);
      const { connectMs, reloadMs, reloadCpuMs } = reload;
      const oldLayout = OLD_RELOAD ? await measureOldLayoutReload(join(tmp, 'broker'), env.CRL_OUTPUT_PATH, tmp, good.files) : null;

      // Revoke call → first refused connection.
      const latencies: number[] = [];
      for (const c of certs) {
        if ((await connect(c.files)) !== 'accepted') throw new Error('certificate refused before its revocation');
        const started = performance.now();
        const r = await t.call(TENANT, 'POST', `/customer/certificates/${c.id}/revoke`, { reason: 'keyCompromise' });
        if (r.status !== 200) throw new Error(`revoke failed: ${r.status} ${r.body}`);
        const others: string[] = [];
        for (;;) {
          const outcome = await connect(c.files);
          if (outcome === 'revoked') break;
          if (outcome !== 'accepted') others.push(outcome);
          if (performance.now() - started > 120_000) throw new Error(`not refused within 120 s (${others.join(' | ')})`);
          await sleep(5);
        }
        latencies.push(performance.now() - started);
      }
      latencies.sort((a, b) => a - b);
      const result = { revokedAlready, crlEntries, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1)!, reloadMs, reloadCpuMs, connectMs, oldReloadMs: oldLayout?.reloadMs ?? NaN, oldReloadCpuMs: oldLayout?.reloadCpuMs ?? NaN, split: `${fmt(reload.reloadAloneCpuMs, 0)} + ${fmt(reload.firstHandshakeCpuMs, 0)}`, oldSplit: oldLayout ? `${fmt(oldLayout.reloadAloneCpuMs, 0)} + ${fmt(oldLayout.firstHandshakeCpuMs, 0)}` : '-' };
      console.log(
        `${fmt(revokedAlready, 0)} already revoked (CRL file: ${fmt(crlEntries, 0)} entries): revoke → refusal p50 ${fmt(result.p50, 0)} ms, p99 ${fmt(result.p99, 0)} ms (max ${fmt(result.max, 0)}); ` +
          `broker reload (${LAYOUT}) ${fmt(reloadMs, 0)} ms, ${fmt(reloadCpuMs, 0)} ms of Mosquitto CPU (connection ${fmt(connectMs, 0)} ms)` +
          `, CPU reload alone + first handshake ${result.split} ms` +
          (oldLayout ? `; same CRL as crlfile: reload ${fmt(oldLayout.reloadMs, 0)} ms, ${fmt(oldLayout.reloadCpuMs, 0)} ms of CPU (alone + first handshake ${result.oldSplit} ms)` : ''),
      );
      return result;
    } finally {
      await t.close();
      await broker.stop();
    }
  } finally {
    await closeBrokerTest({ database, tmp });
  }
}

function expect201(r: { status: number; body: string }) {
  if (r.status !== 201) throw new Error(`expected 201, got ${r.status}: ${r.body}`);
}

export async function runBrokerRefusalBench() {
  console.log(`\n## Revocation → broker refusal (real Mosquitto, certfleet on Postgres, ${REVOCATIONS} revocations per size; ${benchAclLabel()}; CRL layout ${LAYOUT}${BROKER_ENV ? `; broker GLIBC_TUNABLES=${BROKER_ENV.GLIBC_TUNABLES}` : ''})`);
  const rows: (string | number)[][] = [];
  for (const size of SIZES) {
    const r = await measureSize(size);
    rows.push([size, r.crlEntries, REVOCATIONS, round(r.p50, 0), round(r.p99, 0), round(r.max, 0), round(r.reloadMs, 0), round(r.reloadCpuMs, 0), r.split, round(r.oldReloadMs, 0), round(r.oldReloadCpuMs, 0), r.oldSplit, round(r.p50 - r.reloadMs, 0), round(loadavg()[0], 1)]);
  }
  emitTable({
    id: 'broker-refusal',
    title: 'Revocation → broker refusal (real Mosquitto)',
    description:
      `\`certfleet broker-config\` files (${benchAclLabel()}), Mosquitto running them as written, certfleet (in the measuring process) on Postgres with the \`BROKER_PID_FILE\` it printed. ` +
      'Each revocation over the API, then a TLS client connects every 5 ms until the broker refuses the certificate (TLS alert 44). ' +
      `CRL layout: ${LAYOUT === 'capath' ? 'capath (placeholder crlfile, the CRL loaded at the first handshake after a reload; the default since issue 22)' : 'crlfile (the CRL loaded twice per reload)'}. ` +
      "Broker reload: SIGHUP → first accepted connection, less an ordinary connection's time, median of 3 (capath: including that handshake's CRL load); Mosquitto's CPU over the same span (/proc, 10 ms steps). " +
      "CPU split: SIGHUP until the broker's CPU time stops growing (150 ms polls), then the first handshake after it (capath: the CRL's lazy load). " +
      'The same for the single-crlfile layout: a second Mosquitto with `crlfile CRL_OUTPUT_PATH`, same CRL, same run. ' +
      'Back to back, so the large-CRL reload bound is off here (`BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS=0`; with it, a revocation within 10 s of the previous reload of a CRL of 4 MiB or more waits for the rest of the interval). ' +
      'No peer: openssl, the seed\'s Python approach and cfssl do not publish to a broker.',
    columns: ['revoked already', 'entries in the CRL file before', 'revocations', 'p50 ms', 'p99 ms', 'max ms', "broker's own reload ms", 'Mosquitto CPU per reload ms', 'CPU: reload alone + first handshake ms', 'crlfile layout: reload ms', 'crlfile layout: CPU per reload ms', 'crlfile layout: CPU alone + first handshake ms', 'p50 less the reload ms (target: ≤ 250 p50 at 100k, ≤ 400 at 1M)', 'load avg (1 min) at the end'],
    rows,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBrokerRefusalBench();
}
