/**
 * Revocation → refused on every node of a broker fleet (not a test): three real Mosquitto nodes,
 * each with its own `certfleet broker-agent` (a child process run from the sources, its own
 * folder, token, CRL file and canaries), against the peer measured in the same run and from the
 * same revoke calls: one Mosquitto kept by certfleet itself (BROKER_PID_FILE, the worker's path).
 * At 0 and 100,000 revoked certificates already listed (BENCH_SCALE=small: 0 and 10,000). After
 * each revoke call, TLS clients connect to the four brokers again and again (every 5 ms) until
 * each refuses the certificate (TLS alert 44): "every node" is the slowest of the three agent
 * nodes. Revocations are spaced by the large-CRL reload bound (the agents' and certfleet's own,
 * 10 s from about 90,000 entries): each one is measured as an isolated revocation.
 *
 *   node --import tsx bench/broker-fleet.bench.ts      (or npm run bench, BENCH_ONLY=broker-fleet)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { crlPemToDer } from '../src/crl/verify-crl.ts';
import { createLogger } from '../src/support/logger.ts';
import { brokerTestFixture, closeBrokerTest, runBrokerConfig } from '../test/support/broker-fixture.ts';
import { insertRevokedCertificates } from '../test/support/bulk-revoked.ts';
import { freePort, startMosquitto, type RunningMosquitto } from '../test/support/mosquitto.ts';
import { tlsOptions } from '../test/support/mqtt-clients.ts';
import { startTestService, type TestService } from '../test/support/service.ts';
import { crlEntryCount } from './support/peers.ts';
import { emitTable, round, scaled } from './support/results.ts';
import { fmt, percentile } from './support/server.ts';

const SIZES = process.env.BENCH_FLEET_SIZES ? process.env.BENCH_FLEET_SIZES.split(',').map(Number) : scaled([0, 100_000], [0, 10_000]);
const REVOCATIONS = Number(process.env.BENCH_FLEET_REVOCATIONS) || scaled(10, 4);
const TENANT = 'bench';
const BIN = join(import.meta.dirname, '..', 'test', 'support', 'certfleet-source.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The default bound of the agents and of certfleet's own reloads (10 s), plus a margin. */
const SPACING_MS = 10_500;

interface Broker {
  name: string;
  port: number;
  cafile: string;
  mosquitto: RunningMosquitto;
  agent: ChildProcess | null;
  output: string;
}

async function connect(b: Broker, c: { cert: string; key: string }): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${b.port}`, { ...tlsOptions({ port: b.port, cafile: b.cafile, ...c }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 30_000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

/** ms from `started` until `b` refuses the certificate. */
async function untilRefused(b: Broker, c: { cert: string; key: string }, started: number): Promise<number> {
  for (;;) {
    const outcome = await connect(b, c);
    if (outcome === 'revoked') return performance.now() - started;
    if (performance.now() - started > 180_000) throw new Error(`${b.name}: not refused within 180 s (${outcome})\n${b.output.slice(-2000)}`);
    await sleep(5);
  }
}

async function measureSize(revokedAlready: number) {
  const fixture = await brokerTestFixture('bench-fleet');
  const { tmp, database } = fixture;
  const brokers: Broker[] = [];
  let t: TestService | null = null;
  try {
    if (revokedAlready) {
      await insertRevokedCertificates(database.driver, { count: revokedAlready, now: new Date(), devices: Math.min(10_000, revokedAlready), issuer: 'certfleet bench-fleet Device CA' });
    }
    // Every broker's files first: broker-config is a child process run synchronously, and while it
    // runs this process (the service, in the middle of a publication, say) would stand still.
    const localPort = await freePort();
    const local = runBrokerConfig(fixture.env, join(tmp, 'broker'), ['--port', String(localPort), '--no-kick'], 900_000);
    const env = { ...fixture.env, ...local.env };
    const nodes: Array<{ name: string; dir: string; crlFile: string; port: number; config: ReturnType<typeof runBrokerConfig> }> = [];
    for (const name of ['node-a', 'node-b', 'node-c']) {
      const dir = join(tmp, name);
      mkdirSync(join(dir, 'crl'), { recursive: true, mode: 0o755 });
      const crlFile = join(dir, 'crl', 'crl.pem');
      const port = await freePort();
      nodes.push({ name, dir, crlFile, port, config: runBrokerConfig({ ...fixture.env, CRL_OUTPUT_PATH: crlFile }, join(dir, 'broker'), ['--port', String(port), '--no-kick'], 900_000) });
    }
    // The peer: one Mosquitto beside certfleet (its CRL file and PID file).
    const quiet = createLogger({ level: 'warn', destination: { write: () => undefined } });
    t = await startTestService(database, { dataDir: join(tmp, 'data'), env, overrides: { logger: quiet } });
    const baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    brokers.push({ name: 'local', port: localPort, cafile: local.files.combinedCa, mosquitto: await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true, startTimeoutMs: 300_000 }), agent: null, output: '' });

    // Three nodes with agents.
    const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
    for (const { name, dir, crlFile, port, config } of nodes) {
      const tokenFile = join(dir, 'agent.token');
      writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: name, subject: `broker-node:${name}`, ttlSeconds: 86_400, now: new Date() }), { mode: 0o600 });
      const mosquitto = await startMosquitto({ configDir: join(dir, 'broker'), asWritten: true, startTimeoutMs: 300_000 });
      const b: Broker = { name, port, cafile: config.files.combinedCa, mosquitto, agent: null, output: '' };
      b.agent = spawn(
        process.execPath,
        [
          BIN, 'broker-agent', '--url', baseUrl, '--token-file', tokenFile, '--node', name, '--crl-file', crlFile, '--ca-file', fixture.env.DEVICE_CA_CERT_PATH,
          '--pid-file', config.files.pidFile, '--canary-url', `mqtts://localhost:${port}`, '--canary-ca-file', config.files.combinedCa, '--state-dir', join(dir, 'state'),
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      b.agent.stdout!.on('data', (d: Buffer) => (b.output = (b.output + d.toString()).slice(-20_000)));
      b.agent.stderr!.on('data', (d: Buffer) => (b.output = (b.output + d.toString()).slice(-20_000)));
      brokers.push(b);
    }
    // Ready: every node applied the latest CRL and passed its canary check.
    const until = Date.now() + 600_000;
    for (;;) {
      const list = (await t.call(null, 'GET', '/api/v1/operator/broker-nodes')).json as { nodes: Array<{ node: string; state: string; last_check_result: string | null; crl_number: string | null }>; latest_crl_number: string | null };
      if (list.nodes.length === 3 && list.nodes.every((n) => n.state === 'ok' && n.last_check_result === 'passed' && n.crl_number === list.latest_crl_number)) break;
      if (Date.now() > until) throw new Error(`nodes not ready: ${JSON.stringify(list)}\n${brokers.map((b) => b.output.slice(-1500)).join('\n')}`);
      await sleep(200);
    }

    expect201(await t.call(TENANT, 'POST', '/customer/devices', { device_id: 'FLEET-1' }));
    const certs: { id: number; cert: string; key: string }[] = [];
    for (let i = 0; i < REVOCATIONS; i++) {
      const r = await t.call(TENANT, 'POST', '/customer/devices/FLEET-1/certificates/generate', { key_type: 'ec-p256' });
      expect201(r);
      const cert = join(tmp, 'certs', `${i}.crt`);
      const keyFile = join(tmp, 'certs', `${i}.key`);
      writeFileSync(cert, r.json.cert_pem);
      writeFileSync(keyFile, r.json.private_key_pem, { mode: 0o600 });
      certs.push({ id: r.json.certificate.id, cert, key: keyFile });
    }
    const crlEntries = crlEntryCount(crlPemToDer(readFileSync(env.CRL_OUTPUT_PATH, 'latin1')));

    const single: number[] = [];
    const fleet: number[] = [];
    for (const c of certs) {
      for (const b of brokers) if ((await connect(b, c)) !== 'accepted') throw new Error(`${b.name}: certificate refused before its revocation`);
      await sleep(SPACING_MS); // isolated revocations: outside the previous reload's bound
      const started = performance.now();
      const r = await t.call(TENANT, 'POST', `/customer/certificates/${c.id}/revoke`, { reason: 'keyCompromise' });
      if (r.status !== 200) throw new Error(`revoke failed: ${r.status} ${r.body}`);
      const times = await Promise.all(brokers.map((b) => untilRefused(b, c, started)));
      single.push(times[0]);
      fleet.push(Math.max(...times.slice(1)));
    }
    single.sort((a, b) => a - b);
    fleet.sort((a, b) => a - b);
    const result = {
      revokedAlready,
      crlEntries,
      single: { p50: percentile(single, 50), p99: percentile(single, 99) },
      fleet: { p50: percentile(fleet, 50), p99: percentile(fleet, 99) },
    };
    console.log(
      `${fmt(revokedAlready, 0)} already revoked (${fmt(crlEntries, 0)} entries): one Mosquitto p50 ${fmt(result.single.p50, 0)} / p99 ${fmt(result.single.p99, 0)} ms; ` +
        `three nodes with agents, every node p50 ${fmt(result.fleet.p50, 0)} / p99 ${fmt(result.fleet.p99, 0)} ms`,
    );
    return result;
  } finally {
    for (const b of brokers) {
      if (b.agent && b.agent.exitCode === null) {
        const exited = new Promise((r) => b.agent!.once('exit', r));
        b.agent.kill('SIGTERM');
        await exited;
      }
    }
    await t?.close();
    for (const b of brokers) await b.mosquitto.stop();
    await closeBrokerTest({ database, tmp });
  }
}

function expect201(r: { status: number; body: string }) {
  if (r.status !== 201) throw new Error(`expected 201, got ${r.status}: ${r.body}`);
}

export async function runBrokerFleetBench() {
  console.log(`\n## Revocation → refused on every node (three Mosquitto nodes with agents vs one Mosquitto, ${REVOCATIONS} revocations per size)`);
  const rows: (string | number)[][] = [];
  for (const size of SIZES) {
    const r = await measureSize(size);
    rows.push(['one Mosquitto (certfleet beside it, the peer)', size, r.crlEntries, REVOCATIONS, round(r.single.p50, 0), round(r.single.p99, 0), '1x']);
    rows.push(['three Mosquitto nodes with agents (every node)', size, r.crlEntries, REVOCATIONS, round(r.fleet.p50, 0), round(r.fleet.p99, 0), `${(r.fleet.p50 / r.single.p50).toFixed(1)}x`]);
  }
  emitTable({
    id: 'broker-fleet',
    title: 'Revocation → refused on every node (broker fleet)',
    description:
      'Three real Mosquitto nodes, each with its own `certfleet broker-agent` child process (long poll on `/pki/crl-bundle.pem`, canary check after each CRL), and one Mosquitto kept by certfleet itself (`BROKER_PID_FILE`), measured from the same revoke calls in the same run. ' +
      'After each revoke call TLS clients connect to all four every 5 ms until each refuses the certificate (TLS alert 44); "every node" is the slowest of the three. ' +
      'Revocations are 10.5 s apart (isolated: outside the large-CRL reload bound, which would otherwise hold a reload up to 10 s at 100k entries). certfleet on Postgres, 2 shared cores.',
    columns: ['setup', 'revoked already', 'entries in the CRL file before', 'revocations', 'p50 ms', 'p99 ms', 'p50 vs one Mosquitto'],
    rows,
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runBrokerFleetBench();
}
