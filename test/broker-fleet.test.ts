/**
 * Several real Mosquitto nodes, each with its own `certfleet broker-agent` (a child process run
 * from the sources, in its own folder, with its own broker-agent token):
 *
 * - every agent applies the CRL bundle, proves enforcement with its canaries, and reports;
 * - one revocation is refused by all three brokers, and its live sessions are closed on each;
 * - a stopped agent's node lags behind and raises BROKER_NODE_LAGGING; restarted, it catches up
 *   and the alert closes;
 * - a node whose broker does not read the file the agent writes (a misconfigured crlfile)
 *   fails its canary check: BROKER_ENFORCEMENT_FAILED (critical) and state enforcement_failed.
 * Everything waits on signals (reports in the API, refused handshakes, log lines), never on a delay.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncCrlHashLinks } from '../src/broker/crl-hash-links.ts';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { brokerTestFixture, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { openWatchedClient, tlsOptions, type WatchedClient } from './support/mqtt-clients.ts';
import { startTestService, type TestService } from './support/service.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const TENANT = 'fleet-tenant';

interface Node {
  name: string;
  dir: string;
  config: { files: Record<string, string>; env: Record<string, string> };
  port: number;
  broker: RunningMosquitto;
  crlFile: string;
  tokenFile: string;
  agent: ChildProcess | null;
  output: string;
}

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let t: TestService;
let baseUrl: string;
const nodes: Node[] = [];
const watched: WatchedClient[] = [];

const poll = async <T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x)).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

type NodeView = { node: string; crl_number: string | null; state: string; last_check_result: string | null; last_check_detail: string | null; lag_seconds: number };
const brokerNodes = async () => {
  const res = await t.call(null, 'GET', '/api/v1/operator/broker-nodes');
  expect(res.status, res.body).toBe(200);
  return res.json as { nodes: NodeView[]; latest_crl_number: string | null };
};
const nodeView = (list: { nodes: NodeView[] }, name: string) => list.nodes.find((n) => n.node === name);

async function makeNode(name: string): Promise<Node> {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'crl'), { recursive: true, mode: 0o755 });
  const crlFile = join(dir, 'crl', 'crl.pem');
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  // broker-config writes this node's files and its first CRL file (certfleet's latest CRL).
  const config = await brokerConfigHere({ ...env, CRL_OUTPUT_PATH: crlFile }, join(dir, 'broker'), ['--port', String(port), '--admin-port', String(adminPort)]);
  const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
  const tokenFile = join(dir, 'agent.token');
  writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: name, subject: `broker-node:${name}`, ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
  return { name, dir, config, port, broker: null as unknown as RunningMosquitto, crlFile, tokenFile, agent: null, output: '' };
}

function startAgent(node: Node) {
  const f = node.config.files;
  const child = spawn(
    process.execPath,
    [
      BIN, 'broker-agent', '--url', baseUrl, '--token-file', node.tokenFile, '--node', node.name,
      '--crl-file', node.crlFile, '--ca-file', env.DEVICE_CA_CERT_PATH, '--pid-file', f.pidFile,
      '--admin-url', node.config.env.BROKER_ADMIN_URL, '--admin-password-file', node.config.env.BROKER_ADMIN_PASSWORD_FILE,
      '--canary-url', `mqtts://localhost:${node.port}`, '--canary-ca-file', f.combinedCa, '--state-dir', join(node.dir, 'state'), '--wait', '20',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } },
  );
  child.stdout!.on('data', (d: Buffer) => (node.output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (node.output += d.toString()));
  node.agent = child;
}

async function stopAgent(node: Node) {
  const child = node.agent;
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  node.agent = null;
}

async function device(id: string) {
  expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
  const res = await t.call(TENANT, 'POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  const cert = join(tmp, `${id}.crt`);
  const key = join(tmp, `${id}.key`);
  writeFileSync(cert, res.json.cert_pem);
  writeFileSync(key, res.json.private_key_pem, { mode: 0o600 });
  return { id: res.json.certificate.id as number, cert, key };
}

/** One handshake + CONNECT, no retry. */
async function probe(node: Node, c: { cert: string; key: string }): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${node.port}`, { ...tlsOptions({ port: node.port, cafile: node.config.files.combinedCa, ...c }), reconnectPeriod: 0, connectTimeout: 5000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

async function openAlerts(type: string) {
  const res = await t.call(null, 'GET', `/api/v1/operator/alerts?tenant_id=__system__&type=${type}&status=OPEN`);
  expect(res.status, res.body).toBe(200);
  return res.json.alerts as Array<{ fingerprint: string; severity: number; summary: string }>;
}

beforeAll(async () => {
  ({ tmp, database, env } = await brokerTestFixture('fleet'));
  t = await startTestService(database, {
    dataDir: join(tmp, 'data'),
    env: { ...env, BROKER_LAG_ALERT_SECONDS: '60', BROKER_REPORT_TIMEOUT_SECONDS: '3600' },
  });
  baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
  for (const name of ['node-a', 'node-b', 'node-c']) nodes.push(await makeNode(name));
  for (const node of nodes) node.broker = await startMosquitto({ configDir: join(node.dir, 'broker'), asWritten: true });
  for (const node of nodes) startAgent(node);
}, 180_000);

afterAll(async () => {
  for (const w of watched) await w.end();
  for (const node of nodes) await stopAgent(node).catch(() => undefined);
  if (process.env.SHOW_BROKER_LOGS) for (const node of nodes) console.log(node.name, node.output, node.broker?.logs());
  await t?.close();
  for (const node of nodes) await node.broker?.stop();
  await database?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('three Mosquitto nodes, each with its own broker agent', () => {
  it('every agent applies the latest CRL and proves enforcement with its canaries', async () => {
    // Each agent got canaries at start (one of them revoked), so the CRL moved on; every node catches up and checks both halves.
    const list = await poll(
      'three nodes with the latest CRL and a full canary check',
      brokerNodes,
      (l) => nodes.every((n) => nodeView(l, n.name)?.crl_number === l.latest_crl_number && /revoked canary refused/.test(nodeView(l, n.name)?.last_check_detail ?? '')),
      120_000,
    );
    for (const n of nodes) expect(nodeView(list, n.name)).toMatchObject({ kind: 'mosquitto', state: 'ok', last_check_result: 'passed', lag_seconds: 0 });
    // The file each broker reads is exactly the bundle certfleet serves.
    const bundle = await t.service.crl.bundle!.latest();
    for (const n of nodes) expect(readFileSync(n.crlFile)).toEqual(bundle!.pem);
  }, 150_000);

  it('one revocation is refused by all three brokers, and the live sessions on each are closed', async () => {
    const dev = await device('sensor-1');
    for (const n of nodes) expect(await probe(n, dev)).toBe('accepted');
    const sessions = [];
    for (const n of nodes) {
      const w = await openWatchedClient({ port: n.port, cafile: n.config.files.combinedCa, cert: dev.cert, key: dev.key, clientId: `sensor-1-${n.name}`, reconnectPeriod: 200 });
      watched.push(w);
      sessions.push(w);
    }
    const started = performance.now();
    const res = await t.call(TENANT, 'POST', `/customer/certificates/${dev.id}/revoke`, { reason: 'keyCompromise' });
    expect(res.status, res.body).toBe(200);
    const refusedAfter: number[] = [];
    for (const n of nodes) {
      await poll(`${n.name} refuses the revoked certificate`, () => probe(n, dev), (o) => o === 'revoked', 60_000);
      refusedAfter.push(performance.now() - started);
    }
    for (const w of sessions) await w.waitFor(() => w.closes > 0 && !w.connected, 30_000, 'the revoked session closed');
    console.log(`revocation → refused on every node: ${Math.max(...refusedAfter).toFixed(0)} ms (per node ${refusedAfter.map((x) => x.toFixed(0)).join(', ')} ms)`);
  }, 120_000);

  it('a stopped agent makes its node lag (BROKER_NODE_LAGGING); restarted, it catches up and the alert closes', async () => {
    const lagging = nodes[2]!;
    await stopAgent(lagging);
    const dev = await device('sensor-2');
    expect((await t.call(TENANT, 'POST', `/customer/certificates/${dev.id}/revoke`, {})).status).toBe(200);
    await poll('the two running nodes apply the new CRL', brokerNodes, (l) =>
      nodes.slice(0, 2).every((n) => nodeView(l, n.name)?.crl_number === l.latest_crl_number) && nodeView(l, lagging.name)?.crl_number !== l.latest_crl_number,
    );
    // The publisher may publish once more for the same revocation (coalesced requests): wait until it
    // is idle, then until the two running nodes have that latest CRL too.
    await t.service.crl.publisher!.idle();
    await poll('the two running nodes apply the latest CRL', brokerNodes, (l) => nodes.slice(0, 2).every((n) => nodeView(l, n.name)?.crl_number === l.latest_crl_number));
    expect(await probe(lagging, dev)).toBe('accepted'); // its broker still has the old CRL: what the alert is for
    // Two minutes later (past BROKER_LAG_ALERT_SECONDS), and back: a CRL signed meanwhile would be
    // ahead of the brokers' clocks (the agents refuse those: NOT_YET_VALID).
    const realNow = t.clock.now();
    t.clock.advance(120_000);
    const checked = await t.service.brokerFleet.checkNodes();
    expect(checked.lagging, JSON.stringify(await brokerNodes())).toEqual([lagging.name]);
    const alerts = await openAlerts('BROKER_NODE_LAGGING');
    expect(alerts.map((a) => a.fingerprint)).toEqual([`broker-node:${lagging.name}`]);
    expect(nodeView(await brokerNodes(), lagging.name)?.state).toBe('lagging');
    t.clock.set(realNow);

    startAgent(lagging);
    await poll('the restarted agent catches up', brokerNodes, (l) => nodeView(l, lagging.name)?.crl_number === l.latest_crl_number && nodeView(l, lagging.name)?.state === 'ok');
    await poll('its broker refuses the certificate revoked while it was away', () => probe(lagging, dev), (o) => o === 'revoked');
    await t.service.brokerFleet.checkNodes();
    expect(await openAlerts('BROKER_NODE_LAGGING')).toEqual([]);
  }, 120_000);
});

describe('a broker that does not enforce the CRL it is given', () => {
  it('fails the canary check: BROKER_ENFORCEMENT_FAILED (critical) at once, and the node shows it', async () => {
    const node = await makeNode('node-broken');
    nodes.push(node);
    // The mistake: mosquitto.conf's capath names another CRL folder than the one the agent keeps
    // current (the CRL hash folder layout; before it, a crlfile other than the agent's).
    const conf = node.config.files.config;
    const stale = join(node.dir, 'crl', 'stale.pem');
    copyFileSync(node.crlFile, stale);
    cpSync(`${node.crlFile}.hash`, `${stale}.hash`, { recursive: true, verbatimSymlinks: true });
    await syncCrlHashLinks(`${stale}.hash`, stale, readdirSync(`${stale}.hash`).map((n) => n.slice(0, 8)));
    writeFileSync(conf, readFileSync(conf, 'utf8').replace(`capath ${node.crlFile}.hash\n`, `capath ${stale}.hash\n`));
    expect(readFileSync(conf, 'utf8')).toContain(`capath ${stale}.hash\n`);
    expect(readdirSync(`${stale}.hash`)).toHaveLength(1);
    node.broker = await startMosquitto({ configDir: join(node.dir, 'broker'), asWritten: true });
    startAgent(node);
    const list = await poll('the broken node reports a failed check', brokerNodes, (l) => nodeView(l, node.name)?.last_check_result === 'failed', 120_000);
    expect(nodeView(list, node.name)).toMatchObject({ state: 'enforcement_failed' });
    expect(nodeView(list, node.name)?.last_check_detail).toMatch(/revoked canary was accepted/);
    const alerts = await openAlerts('BROKER_ENFORCEMENT_FAILED');
    expect(alerts).toEqual([expect.objectContaining({ fingerprint: `broker-node:${node.name}`, severity: 5 })]);
    // the healthy nodes raised nothing
    for (const n of nodes.slice(0, 3)) expect(nodeView(list, n.name)?.last_check_result).toBe('passed');
  }, 150_000);
});
