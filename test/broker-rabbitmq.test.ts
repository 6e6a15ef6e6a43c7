/**
 * A second broker family: our own RabbitMQ 3.10 node (MQTT plugin, Erlang/OTP ssl) on free ports,
 * configured by `certfleet broker-config --broker rabbitmq`, one node for the file (its start is
 * the expensive part; both parts below ran their own until issue 23 merged broker-rabbitmq-topics
 * into this file). The topic permissions run first: they count the device users.
 *
 * Per-device topic permissions, matching the Mosquitto acl_file: certfleet
 * (BROKER_RABBITMQ_ADMIN_URL) keeps a user per registered device with vhost permissions for MQTT's
 * own queues and exchange and topic permissions on amq.topic for its own subtree and its tenant's
 * grants. Real devices over mutual TLS (mqtt.js). What a device may not do is refused by the
 * broker (RabbitMQ closes the connection); what reaches amq.topic is observed through a queue the
 * test binds to `#` with the admin.
 *
 * Kept current by `certfleet broker-agent --broker rabbitmq` (a child process): the agent writes
 * the CRL into the node's CRL hash directory (OTP reads it at every handshake, no reload), proves
 * enforcement with its canaries (users with no permission it creates through the management API),
 * and closes a revoked device's live connection through the management API. A valid device is
 * accepted, the revoked one refused on new connections (TLS alert 44), its live connection closed.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { filterToKeyRegex, renderRabbitmqPermissions } from '../src/broker/rabbitmq-permissions.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { brokerTestFixture, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { freePort } from './support/mosquitto.ts';
import { startRabbitmq, RABBITMQ_BIN, type RunningRabbitmq } from './support/rabbitmq.ts';
import { startTestService, type TestService } from './support/service.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const TENANT = 'rabbit-tenant';
const haveRabbit = spawnSync('test', ['-x', join(RABBITMQ_BIN, 'rabbitmq-server')]).status === 0;

describe('RabbitMQ topic permissions (pure)', () => {
  const grants = new Map([['A', [{ filter: 'fleet/+/status', access: 'read' as const }, { filter: 'v1.0/#', access: 'readwrite' as const }]]]);
  const rendered = renderRabbitmqPermissions({
    devices: [
      { tenantId: 'A', deviceId: 'a' },
      { tenantId: 'A', deviceId: 'a.b' },
      { tenantId: 'A.device', deviceId: 'a' },
      { tenantId: 'A', deviceId: 'x:1-2_3' },
    ],
    grants,
    renewalTopics: true,
  });
  const re = (s: string) => new RegExp(s);

  it('gives nothing to ids or grant filters with "." (RabbitMQ maps "/" and "." to the same separator)', () => {
    expect([...rendered.users.keys()]).toEqual(['A/a', 'A/x:1-2_3']);
    expect(rendered.skipped).toEqual(['A: v1.0/#', 'A/a.b', 'A.device/a']);
  });

  it('a device reaches its own subtree, its grants and its renewal topics, nothing else', () => {
    const a = rendered.users.get('A/a')!;
    for (const key of ['tenant.A.device.a', 'tenant.A.device.a.x', 'tenant.A.device.a.#', 'tenant.A.device.a.*.y', 'tenant.A.fleet.z.status', 'tenant.A.fleet.*.status', 'certfleet.renew.A.a.response']) {
      expect(re(a.read).test(key), key).toBe(true);
    }
    for (const key of ['tenant.A.device.ab', 'tenant.A.device.x:1-2_3.t', 'tenant.A.device.#', 'tenant.A.#', '#', 'tenant.*.device.a.#', 'tenant.A.fleet.#', 'tenant.A.fleet.#.status', 'tenant.A.v1.0.x', 'certfleet.renew.A.a.request', 'certfleet.renew.A.x:1-2_3.response', 'tenant.B.device.a']) {
      expect(re(a.read).test(key), key).toBe(false);
    }
    expect(re(a.write).test('tenant.A.fleet.z.status')).toBe(false); // read-only grant
    expect(re(a.write).test('certfleet.renew.A.a.request')).toBe(true);
    expect(re(rendered.users.get('A/x:1-2_3')!.write).test('tenant.A.device.x:1-2_3.up')).toBe(true);
  });

  it('escapes regex characters of a filter', () => {
    expect(filterToKeyRegex('tenant/A/b+c/#')).toBe('tenant\\.A\\.b\\+c(\\..*)?');
  });
});

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let t: TestService;
let rabbit: RunningRabbitmq;
let files: Record<string, string>;
let rabbitFiles: Record<string, string>;
let adminPassword = '';
const clients: MqttClient[] = [];
let agent: ChildProcess | null = null;
let agentOutput = '';

const management = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${rabbit.managementUrl}${path}`, {
    method,
    headers: { authorization: `Basic ${Buffer.from(`certfleet-admin:${adminPassword}`).toString('base64')}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
};

const poll = async <T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000): Promise<T> => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 1500)}${agent ? `\nagent: ${agentOutput.slice(-3000)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

type Device = { cert: string; key: string; cn: string };
const devices: Record<string, Device> = {};

async function register(tenant: string, id: string): Promise<Device> {
  const reg = await t.call(tenant, 'POST', '/customer/devices', { device_id: id });
  expect(reg.status, reg.body).toBe(201);
  const gen = await t.call(tenant, 'POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' });
  expect(gen.status, gen.body).toBe(201);
  const dev = { cert: join(tmp, `${tenant}-${id}.crt`), key: join(tmp, `${tenant}-${id}.key`), cn: `${tenant}/${id}` };
  writeFileSync(dev.cert, gen.json.cert_pem);
  writeFileSync(dev.key, gen.json.private_key_pem, { mode: 0o600 });
  devices[`${tenant}/${id}`] = dev;
  return dev;
}

/** A connected device (MQTT 3.1.1: RabbitMQ 3.10; client id: its CN unless told), or the reason it was refused. */
async function connect(dev: Device, options: { clientId?: string; clean?: boolean } = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(
    `mqtts://localhost:${rabbit.mqttTlsPort}`,
    {
      ...tlsOptions({ port: rabbit.mqttTlsPort, cafile: files.combinedCa, cert: dev.cert, key: dev.key }),
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      clientId: options.clientId ?? dev.cn,
      clean: options.clean ?? true,
    },
    false,
  );
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

/** Resolves with 'granted' (SUBACK) or 'refused' (the broker closed the connection). */
async function subscribe(dev: Device, filter: string, clientId?: string): Promise<'granted' | 'refused'> {
  const client = await connect(dev, { clientId });
  const closed = new Promise<'refused'>((resolve) => client.once('close', () => resolve('refused')));
  const acked = client.subscribeAsync(filter, { qos: 1 }).then((grants) => (grants.every((g) => g.qos !== 128) ? ('granted' as const) : ('refused' as const)), () => 'refused' as const);
  const result = await Promise.race([acked, closed]);
  await client.endAsync(true);
  return result;
}

/** QoS 1: 'accepted' (PUBACK) or 'refused' (the broker closed the connection). */
async function publish(dev: Device, topic: string, payload: string, clientId?: string): Promise<'accepted' | 'refused'> {
  const client = await connect(dev, { clientId });
  const closed = new Promise<'refused'>((resolve) => client.once('close', () => resolve('refused')));
  const acked = client.publishAsync(topic, payload, { qos: 1 }).then(() => 'accepted' as const, () => 'refused' as const);
  const result = await Promise.race([acked, closed]);
  await client.endAsync(true);
  return result;
}

/** Every message routed through amq.topic since the test bound its watch queue: routing key → payloads. */
async function routed(): Promise<Array<{ routing_key: string; payload: string }>> {
  return management('POST', '/api/queues/%2F/certfleet-test-watch/get', { count: 1000, ackmode: 'ack_requeue_true', encoding: 'auto' });
}

async function probe(c: { cert: string; key: string }): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${rabbit.mqttTlsPort}`, { ...tlsOptions({ port: rabbit.mqttTlsPort, cafile: files.combinedCa, ...c }), protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

describe.runIf(haveRabbit)(`RabbitMQ 3.10 (MQTT plugin) configured by broker-config${haveRabbit ? '' : ` (skipped: no ${join(RABBITMQ_BIN, 'rabbitmq-server')}; apt-get install -y rabbitmq-server)`}`, () => {
  beforeAll(async () => {
    ({ tmp, database, env } = await brokerTestFixture('rabbit'));
    const [mqttTlsPort, managementPort] = [await freePort(), await freePort()];
    const written = await brokerConfigHere(env, join(tmp, 'broker'), ['--broker', 'rabbitmq', '--port', String(mqttTlsPort), '--admin-port', String(managementPort)]);
    files = written.files;
    rabbitFiles = (written.files as unknown as { rabbitmq: Record<string, string> }).rabbitmq;
    const hashFiles = readdirSync(rabbitFiles.crlDir).filter((n) => /^[0-9a-f]{8}\.r0$/.test(n));
    expect(hashFiles).toHaveLength(1); // the current CRL, before the broker starts
    // DER, not PEM: OTP decodes the file at every handshake, and PEM adds a base64 decode of the whole CRL to each
    expect(readFileSync(join(rabbitFiles.crlDir, hashFiles[0]!))[0]).toBe(0x30);
    adminPassword = readFileSync(rabbitFiles.adminPasswordFile, 'utf8').trim();
    rabbit = await startRabbitmq(join(tmp, 'rabbit'), { configDir: rabbitFiles.dir, mqttTlsPort, managementPort });
    // what broker-config tells certfleet to run with: it keeps the node's device users (BROKER_RABBITMQ_*)
    expect(written.env).toMatchObject({ BROKER_RABBITMQ_ADMIN_URL: rabbit.managementUrl, BROKER_RABBITMQ_ADMIN_PASSWORD_FILE: rabbitFiles.adminPasswordFile });
    t = await startTestService(database, { dataDir: join(tmp, 'data'), env: { ...env, ...written.env } });
  }, 300_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await exited;
    }
    if (process.env.SHOW_BROKER_LOGS) console.log(agentOutput, rabbit?.logs());
    for (const c of clients) c.end(true);
    await t?.close();
    await rabbit?.stop();
    await database?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, 120_000);

  describe('per-device topic permissions kept by certfleet', () => {
    beforeAll(async () => {
      await management('PUT', '/api/queues/%2F/certfleet-test-watch', { durable: false, auto_delete: false });
      await management('POST', '/api/bindings/%2F/e/amq.topic/q/certfleet-test-watch', { routing_key: '#' });
      await register('A', 'a1');
      await register('A', 'a2');
      await register('A', 'x');
      await register('A', 'x.y');
      await register('B', 'b1');
      const grants = await t.call('A', 'PUT', '/customer/broker-grants', { grants: [{ filter: 'fleet/+/status', access: 'read' }, { filter: 'cmd/#', access: 'readwrite' }, { filter: 'v1.0/#', access: 'readwrite' }] }, 'tenant-admin');
      expect(grants.status, grants.body).toBe(200);
    }, 120_000);

    it('certfleet made one user per registered device (no password), with MQTT-only vhost permissions and topic permissions', async () => {
      const users = (await management('GET', '/api/users')) as Array<{ name: string; tags: string[]; password_hash: string }>;
      const deviceUsers = users.filter((u) => u.tags.includes('certfleet-device')).map((u) => u.name).sort();
      expect(deviceUsers).toEqual(['A/a1', 'A/a2', 'A/x', 'B/b1']); // A/x.y: a "." would collide with other ids
      expect(users.find((u) => u.name === 'A/a1')!.password_hash).toBe('');
      const perms = await management('GET', `/api/users/${encodeURIComponent('A/a1')}/permissions`);
      expect(perms).toEqual([expect.objectContaining({ vhost: '/', configure: '^mqtt-subscription-A/a1(/.*)?qos[01]$', read: '^(amq\\.topic|mqtt-subscription-A/a1(/.*)?qos[01])$' })]);
      const topics = await management('GET', `/api/users/${encodeURIComponent('B/b1')}/topic-permissions`);
      expect(topics).toEqual([expect.objectContaining({ exchange: 'amq.topic', read: '^(tenant\\.B\\.device\\.b1(\\..*)?)$' })]);
    });

    it('a device uses its own topics; a device of tenant B reaches nothing of tenant A', async () => {
      const b1 = devices['B/b1'];
      expect(await subscribe(b1, 'tenant/B/device/b1/#')).toBe('granted');
      expect(await publish(b1, 'tenant/B/device/b1/up', 'b1-own')).toBe('accepted');
      for (const filter of ['tenant/A/device/a1/#', 'tenant/A/device/a1/cmd', 'tenant/A/#', 'tenant/+/device/a1/#', '#', '+/A/device/a1/#', 'tenant/A/cmd/#', 'tenant/A/fleet/+/status']) {
        expect(await subscribe(b1, filter), filter).toBe('refused');
      }
      for (const topic of ['tenant/A/device/a1/cmd', 'tenant/A/cmd/go', 'tenant/A/fleet/b1/status']) {
        expect(await publish(b1, topic, `b1-attack ${topic}`), topic).toBe('refused');
      }
      const keys = (await routed()).map((m) => `${m.routing_key} ${m.payload}`);
      expect(keys).toContain('tenant.B.device.b1.up b1-own');
      expect(keys.filter((k) => k.includes('b1-attack'))).toEqual([]);
    });

    it("a device of the same tenant reaches neither another device's topics nor wildcards over them", async () => {
      const a2 = devices['A/a2'];
      for (const filter of ['tenant/A/device/a1/#', 'tenant/A/device/+/cmd', 'tenant/A/device/#', 'tenant/A/+/a1/#']) {
        expect(await subscribe(a2, filter), filter).toBe('refused');
      }
      expect(await publish(a2, 'tenant/A/device/a1/cmd', 'a2-attack')).toBe('refused');
      expect((await routed()).filter((m) => m.payload === 'a2-attack')).toEqual([]);
    });

    it("the tenant's grants work as granted (read-only stays read-only), and only for its devices", async () => {
      const [a1, a2] = [devices['A/a1'], devices['A/a2']];
      expect(await subscribe(a1, 'tenant/A/fleet/+/status')).toBe('granted');
      expect(await subscribe(a1, 'tenant/A/fleet/z/status')).toBe('granted');
      expect(await subscribe(a1, 'tenant/A/fleet/#')).toBe('refused'); // more than fleet/+/status
      expect(await publish(a1, 'tenant/A/fleet/a1/status', 'read-only')).toBe('refused');
      expect(await subscribe(a2, 'tenant/A/cmd/#')).toBe('granted');
      expect(await publish(a1, 'tenant/A/cmd/reboot', 'a1-cmd')).toBe('accepted');
      expect((await routed()).map((m) => `${m.routing_key} ${m.payload}`)).toContain('tenant.A.cmd.reboot a1-cmd');
      // a grant filter with "." (v1.0/#) is not given on RabbitMQ: tenant/A/v1.0/x is the key tenant.A.v1.0.x
      expect(await subscribe(a1, 'tenant/A/v1.0/#')).toBe('refused');
    });

    it('an id with "." gets no user: the device cannot log in, so it cannot reach tenant/A/device/x/... (the same routing keys)', async () => {
      await expect(connect(devices['A/x.y'])).rejects.toThrow(/Not authorized|Bad username|refused|closed/i);
      // device x owns tenant.A.device.x.#, which is where "tenant/A/device/x.y/..." lands: nobody else can use it
      expect(await subscribe(devices['A/x'], 'tenant/A/device/x/#')).toBe('granted');
    });

    it("a device subscribes only with its own client ids (CN or CN/...), so it cannot resume another device's persistent session", async () => {
      const [a1, b1] = [devices['A/a1'], devices['B/b1']];
      expect(await subscribe(a1, 'tenant/A/device/a1/#', 'A/a1/sensor-7')).toBe('granted');
      expect(await subscribe(a1, 'tenant/A/device/a1/#', 'random-client-id')).toBe('refused');
      expect(await publish(a1, 'tenant/A/device/a1/any-client-id', 'published', 'random-client-id')).toBe('accepted');
      // a1's persistent session: a queue bound to its own topics
      const session = await connect(a1, { clean: false });
      await session.subscribeAsync('tenant/A/device/a1/#', { qos: 1 });
      await session.endAsync();
      // b1 presents a1's client id to take the session over: RabbitMQ refuses to recover it
      await expect(connect(b1, { clientId: 'A/a1', clean: false })).rejects.toThrow(/refused|unavailable|closed/i);
      expect(await publish(a1, 'tenant/A/device/a1/secret', 'for-a1-only', 'A/a1/publisher')).toBe('accepted'); // not A/a1: a clean session would end the persistent one
      // a1 resumes its session and gets what was queued for it (listener attached before the CONNACK)
      const got: string[] = [];
      const resumed = mqtt.connect(`mqtts://localhost:${rabbit.mqttTlsPort}`, {
        ...tlsOptions({ port: rabbit.mqttTlsPort, cafile: files.combinedCa, cert: a1.cert, key: a1.key }),
        protocolVersion: 4,
        reconnectPeriod: 0,
        clientId: 'A/a1',
        clean: false,
      });
      clients.push(resumed);
      resumed.on('error', () => undefined);
      resumed.on('message', (_topic, payload) => got.push(payload.toString()));
      await poll('the queued message', async () => got, (g) => g.includes('for-a1-only'), 30_000);
      await resumed.endAsync();
    });

    it('users of devices that are no longer registered are deleted; other users are left alone', async () => {
      await management('PUT', `/api/users/${encodeURIComponent('A/gone')}`, { password_hash: '', tags: 'certfleet-device' });
      await management('PUT', '/api/users/operator-made', { password: 'x', tags: '' });
      await register('A', 'a3'); // any change syncs
      await poll(
        'the stale device user deleted',
        async () => ((await management('GET', '/api/users')) as Array<{ name: string }>).map((u) => u.name),
        (names) => !names.includes('A/gone') && names.includes('A/a3') && names.includes('operator-made') && names.includes('certfleet-admin'),
      );
      expect(await subscribe(devices['A/a3'], 'tenant/A/device/a3/#')).toBe('granted');
    });
  });

  describe('kept current by a broker agent (a child process)', () => {
    beforeAll(async () => {
      const baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
      writeFileSync(join(tmp, 'admin.password'), adminPassword, { mode: 0o600 });
      const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
      writeFileSync(join(tmp, 'agent.token'), await key.sign({ roles: ['broker-agent'], brokerNode: 'rabbit-1', subject: 'broker-node:rabbit-1', ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
      agent = spawn(
        process.execPath,
        [
          BIN, 'broker-agent', '--broker', 'rabbitmq', '--url', baseUrl, '--token-file', join(tmp, 'agent.token'), '--node', 'rabbit-1',
          '--crl-file', rabbitFiles.crlDir, '--ca-file', env.DEVICE_CA_CERT_PATH,
          '--admin-url', rabbit.managementUrl, '--admin-password-file', join(tmp, 'admin.password'),
          '--canary-url', `mqtts://localhost:${rabbit.mqttTlsPort}`, '--canary-ca-file', files.combinedCa, '--state-dir', join(tmp, 'agent-state'), '--wait', '20',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      agent.stdout!.on('data', (d: Buffer) => (agentOutput += d.toString()));
      agent.stderr!.on('data', (d: Buffer) => (agentOutput += d.toString()));
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
});
