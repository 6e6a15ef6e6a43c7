/**
 * A second broker family: our own RabbitMQ 3.10 node (MQTT plugin, Erlang/OTP ssl) on free ports,
 * configured by `certfleet broker-config --broker rabbitmq` (certfleet keeps its device users, BROKER_RABBITMQ_*), kept current by `certfleet broker-agent --broker rabbitmq`
 * (a child process): the agent writes the CRL into the node's CRL hash directory (OTP reads it at
 * every handshake, no reload), proves enforcement with its canaries (users with no permission it
 * creates through the management API), and closes a revoked device's live connection through the
 * management API. A valid device is accepted, the revoked one refused on new connections (TLS
 * alert 44), its live connection closed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { brokerTestFixture, runBrokerConfig } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startRabbitmq, RABBITMQ_BIN, type RunningRabbitmq } from './support/rabbitmq.ts';
import { freePort } from './support/mosquitto.ts';
import { startTestService, type TestService } from './support/service.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const TENANT = 'rabbit-tenant';
const haveRabbit = spawnSync('test', ['-x', join(RABBITMQ_BIN, 'rabbitmq-server')]).status === 0;

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let t: TestService;
let rabbit: RunningRabbitmq;
let agent: ChildProcess | null = null;
let agentOutput = '';
let files: Record<string, string>;
let ADMIN_PASSWORD = '';

const poll = async <T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 1500)}\nagent: ${agentOutput.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const management = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${rabbit.managementUrl}${path}`, {
    method,
    headers: { authorization: `Basic ${Buffer.from(`certfleet-admin:${ADMIN_PASSWORD}`).toString('base64')}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  expect(res.ok, `${method} ${path}: ${res.status}`).toBe(true);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
};

async function probe(c: { cert: string; key: string }): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${rabbit.mqttTlsPort}`, { ...tlsOptions({ port: rabbit.mqttTlsPort, cafile: files.combinedCa, ...c }), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

describe.runIf(haveRabbit)(`RabbitMQ 3.10 (MQTT plugin) kept current by a broker agent${haveRabbit ? '' : ` (skipped: no ${join(RABBITMQ_BIN, 'rabbitmq-server')}; apt-get install -y rabbitmq-server)`}`, () => {
  beforeAll(async () => {
    ({ tmp, database, env } = await brokerTestFixture('rabbit'));
    const [mqttTlsPort, managementPort] = [await freePort(), await freePort()];
    const written = runBrokerConfig(env, join(tmp, 'broker'), ['--broker', 'rabbitmq', '--port', String(mqttTlsPort), '--admin-port', String(managementPort)]);
    files = written.files;
    const rabbitFiles = (written.files as unknown as { rabbitmq: Record<string, string> }).rabbitmq;
    const crlDir = rabbitFiles.crlDir;
    const hashFiles = readdirSync(crlDir).filter((n) => /^[0-9a-f]{8}\.r0$/.test(n));
    expect(hashFiles).toHaveLength(1); // the current CRL, before the broker starts
    // DER, not PEM: OTP decodes the file at every handshake, and PEM adds a base64 decode of the whole CRL to each
    expect(readFileSync(join(crlDir, hashFiles[0]!))[0]).toBe(0x30);
    ADMIN_PASSWORD = readFileSync(rabbitFiles.adminPasswordFile, 'utf8').trim();
    rabbit = await startRabbitmq(join(tmp, 'rabbit'), { configDir: rabbitFiles.dir, mqttTlsPort, managementPort });
    // certfleet keeps the node's device users (BROKER_RABBITMQ_*, as broker-config printed them)
    t = await startTestService(database, { dataDir: join(tmp, 'data'), env: { ...env, ...written.env } });
    const baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    writeFileSync(join(tmp, 'admin.password'), ADMIN_PASSWORD, { mode: 0o600 });
    const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
    writeFileSync(join(tmp, 'agent.token'), await key.sign({ roles: ['broker-agent'], brokerNode: 'rabbit-1', subject: 'broker-node:rabbit-1', ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
    agent = spawn(
      process.execPath,
      [
        BIN, 'broker-agent', '--broker', 'rabbitmq', '--url', baseUrl, '--token-file', join(tmp, 'agent.token'), '--node', 'rabbit-1',
        '--crl-file', crlDir, '--ca-file', env.DEVICE_CA_CERT_PATH,
        '--admin-url', rabbit.managementUrl, '--admin-password-file', join(tmp, 'admin.password'),
        '--canary-url', `mqtts://localhost:${rabbit.mqttTlsPort}`, '--canary-ca-file', files.combinedCa, '--state-dir', join(tmp, 'agent-state'), '--wait', '20',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    agent.stdout!.on('data', (d: Buffer) => (agentOutput += d.toString()));
    agent.stderr!.on('data', (d: Buffer) => (agentOutput += d.toString()));
  }, 240_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await exited;
    }
    if (process.env.SHOW_BROKER_LOGS) console.log(agentOutput, rabbit?.logs());
    await t?.close();
    await rabbit?.stop();
    await database?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 120_000);

  it('the agent applies the CRL and its canary check passes (revoked canary refused, valid accepted)', async () => {
    const list = await poll(
      'the RabbitMQ node reports a full passing check',
      async () => (await t.call(null, 'GET', '/api/v1/operator/broker-nodes')).json,
      (l) => /revoked canary refused/.test(l.nodes.find((n: { node: string }) => n.node === 'rabbit-1')?.last_check_detail ?? ''),
      120_000,
    );
    expect(list.nodes[0]).toMatchObject({ node: 'rabbit-1', kind: 'rabbitmq', state: 'ok', last_check_result: 'passed', crl_number: list.latest_crl_number });
  }, 150_000);

  it('accepts a valid device, refuses it on new connections once revoked, and closes its live connection', async () => {
    expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: 'r-1' })).status).toBe(201);
    const gen = await t.call(TENANT, 'POST', '/customer/devices/r-1/certificates/generate', { key_type: 'ec-p256' });
    expect(gen.status, gen.body).toBe(201);
    const dev = { cert: join(tmp, 'r-1.crt'), key: join(tmp, 'r-1.key') };
    writeFileSync(dev.cert, gen.json.cert_pem);
    writeFileSync(dev.key, gen.json.private_key_pem, { mode: 0o600 });
    // RabbitMQ logs a certificate in only as an existing user: certfleet made it at the registration
    const users = (await management('GET', '/api/users')) as Array<{ name: string }>;
    expect(users.map((u) => u.name)).toContain(`${TENANT}/r-1`);
    expect(await probe(dev)).toBe('accepted');
    // RabbitMQ 3.10 speaks MQTT 3.1.1 only
    const live = mqtt.connect(`mqtts://localhost:${rabbit.mqttTlsPort}`, { ...tlsOptions({ port: rabbit.mqttTlsPort, cafile: files.combinedCa, ...dev }), protocolVersion: 4, clientId: 'r-1-live', reconnectPeriod: 200 });
    let closes = 0;
    live.on('close', () => closes++);
    live.on('error', () => undefined);
    await poll('the live connection', async () => live.connected, (c) => c);
    try {
      const started = performance.now();
      expect((await t.call(TENANT, 'POST', `/customer/certificates/${gen.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
      await poll('RabbitMQ refuses the revoked certificate', () => probe(dev), (o) => o === 'revoked');
      const refusedMs = performance.now() - started;
      await poll('the live connection closed', async () => ({ closes, connected: live.connected }), (v) => v.closes > 0 && !v.connected, 30_000);
      console.log(`RabbitMQ: revocation → refused ${refusedMs.toFixed(0)} ms, live connection closed ${(performance.now() - started).toFixed(0)} ms`);
    } finally {
      await live.endAsync(true);
    }
  }, 120_000);
});
