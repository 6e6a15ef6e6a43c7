/**
 * Recovery after an offline period over MQTT (issue 21, item 3), with a real Mosquitto configured
 * by `certfleet broker-config --mqtt-renewal --recovery-port` and run as written. A device whose
 * certificate really expired is refused by the device listener (mutual TLS); it connects to the
 * recovery listener with the shared recovery login (server TLS, no client certificate), sends a
 * request signed with its expired certificate's key, gets a certificate for its new key, and
 * connects with it. An attacker holding the recovery login and one expired device certificate
 * cannot renew another device, cannot read device topics, and cannot take over a device session.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock, DAY_MS } from '../src/domain/clock.ts';
import { createWorker } from '../src/composition/worker.ts';
import { captureLogger } from './support/capture-logger.ts';
import type { TestDatabase } from './support/databases.ts';
import { aclPluginPath } from './support/acl-plugin.ts';
import { startBrokerTest, type RunningBrokerTest } from './support/broker-fixture.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { signedRenewalRequest } from './support/renewal-request.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const exec = promisify(execFile);
const TENANT = 'TENANT1';

let setup: RunningBrokerTest;
let tmp: string;
let database: TestDatabase;
let t: TestService;
let port: number;
let recoveryPort: number;
let combinedCa: string;
let recoveryPassword: string;
let serviceEnv: Record<string, string>;
const realNow = Date.now();
const clock = createManualClock(new Date(realNow - 40 * DAY_MS));

interface Answer {
  request_id: string | null;
  server_time?: string;
  cert_pem?: string;
  problem?: { code: string; status: number; detail: string };
}

const file = (name: string) => join(tmp, name);
const openssl = async (args: string[]) => (await exec('openssl', args, { cwd: tmp })).stdout;

async function generate(deviceId: string, name: string): Promise<number> {
  expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
  const res = await t.call(TENANT, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: 1 });
  expect(res.status, res.body).toBe(201);
  writeFileSync(file(`${name}.crt`), res.json.cert_pem);
  writeFileSync(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
  return res.json.certificate.id;
}

async function csrPem(name: string): Promise<string> {
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=device', '-out', `${name}.csr`]);
  return readFileSync(file(`${name}.csr`), 'utf8');
}

/** A connection to the recovery listener: server TLS (combined-ca.crt), the recovery login, no client certificate. */
async function recoveryClient(options: { password?: string; clientId?: string } = {}): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtts://localhost:${recoveryPort}`, {
    ca: readFileSync(combinedCa),
    username: 'certfleet-recovery',
    password: options.password ?? recoveryPassword,
    clientId: options.clientId ?? `recover-${Math.random().toString(36).slice(2)}`,
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 20_000,
  });
}

async function ask(client: MqttClient, message: { request_id: string }): Promise<Answer> {
  const topic = `certfleet/recover/response/${message.request_id}`;
  const answered = new Promise<Answer>((resolve) => {
    client.on('message', (got, payload) => {
      if (got === topic) resolve(JSON.parse(payload.toString()) as Answer);
    });
  });
  await client.subscribeAsync(topic, { qos: 1 });
  await client.publishAsync('certfleet/recover/request', JSON.stringify(message), { qos: 1 });
  return answered;
}

async function connectDevice(name: string, clientId?: string): Promise<MqttClient> {
  return mqtt.connectAsync(
    `mqtts://localhost:${port}`,
    { ...tlsOptions({ port, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000, ...(clientId ? { clientId } : {}) },
    false,
  );
}

describe.each(['plugin', 'acl_file'] as const)('recovery over MQTT (real Mosquitto, broker-config --mqtt-renewal --recovery-port, %s mode)', (mode) => {
  beforeAll(async () => {
    clock.set(new Date(realNow - 40 * DAY_MS)); // each mode starts 40 days in the past
    setup = await startBrokerTest('mqtt-recovery', {
      now: clock.now(),
      // The service starts 40 days in the past: its CRLs must still be valid on the broker's (real) clock.
      env: { CRL_VALIDITY_HOURS: String(60 * 24) },
      extraPorts: 1,
      args: ([recovery]) => ['--mqtt-renewal', '--recovery-port', String(recovery), ...(mode === 'plugin' ? ['--acl-plugin', aclPluginPath()] : ['--no-acl-plugin'])],
    });
    ({ tmp, database, port } = setup);
    recoveryPort = setup.extraPorts[0]!;
    const { config, env } = setup;
    expect(config.recovery).toMatchObject({ port: recoveryPort, username: 'certfleet-recovery' });
    recoveryPassword = readFileSync(config.recovery!.passwordFile, 'utf8').trim();
    combinedCa = config.files.combinedCa;
    serviceEnv = env;
    t = await startTestService(database, { dataDir: file('data'), env, clock });
    await t.service.renewal.start(t.service.app.log);
  }, scaled(120_000));

  afterAll(async () => {
    await t?.close();
    await setup?.close();
  }, scaled(60_000));

  let scooterId: number;
  let otherId: number;

  it('the broker configuration: a recovery listener without client certificates, a login limited to two topics', () => {
    const conf = readFileSync(file('broker/mosquitto.conf'), 'utf8');
    expect(conf).toMatch(new RegExp(`listener ${recoveryPort} [^\\n]+\\n(?:[^\\n]+\\n)*?require_certificate false\\nuse_username_as_clientid true`));
    if (mode === 'plugin') {
      // The plugin decides for the recovery login: its request topic and the answers (broker-plugin/certfleet_acl.c).
      expect(conf).toContain('plugin_opt_recovery_username certfleet-recovery\n');
      return;
    }
    const acl = readFileSync(file('broker/acl'), 'utf8');
    expect(acl).toMatch(/user certfleet-recovery\ntopic write certfleet\/recover\/request\ntopic read certfleet\/recover\/response\/\+\n/);
    expect(acl).toMatch(/user certfleet-admin[\s\S]*topic read certfleet\/recover\/request[\s\S]*topic write certfleet\/recover\/response\/\+/);
  });

  it('an expired device is refused by the device listener, recovers over the recovery listener, and connects with its new certificate', async () => {
    scooterId = await generate('scooter', 'scooter');
    otherId = await generate('other', 'other');
    clock.set(new Date(realNow));
    await expect(connectDevice('scooter')).rejects.toThrow();

    // Recovery is off by default.
    const client = await recoveryClient();
    const off = await ask(client, signedRenewalRequest('rec-0', await csrPem('scooter-0'), { cert: file('scooter.crt'), key: file('scooter.key') }));
    expect(off.problem?.code).toBe('RECOVERY_DISABLED');
    // server_time is certfleet's clock (here the test's, set to the real time when this test began; not Date.now(), which a loaded machine moves on)
    expect(Date.parse(off.server_time!)).toBe(clock.now().getTime());

    expect((await t.call(TENANT, 'PUT', '/customer/renewal-policy', { recovery_window_days: 180 }, 'tenant-admin')).status).toBe(200);
    const answer = await ask(client, signedRenewalRequest('rec-1', await csrPem('scooter-new'), { cert: file('scooter.crt'), key: file('scooter.key') }));
    expect(answer.problem, JSON.stringify(answer.problem)).toBeUndefined();
    expect(answer.server_time).toBeDefined();
    writeFileSync(file('scooter-new.crt'), answer.cert_pem!);
    expect(await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*TENANT1\/scooter/);
    expect(await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'scooter-new.key', '-pubout']));
    await client.endAsync();

    const device = await connectDevice('scooter-new');
    expect(device.connected).toBe(true);
    await device.endAsync();

    const audit = (await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.recovered')).json.audit_events;
    expect(audit[0]).toMatchObject({ actor: 'device:TENANT1/scooter', target_id: String(scooterId), details: { transport: 'mqtt', certificate_id: scooterId } });
  });

  // Issue 21 item 7: every refused recovery is audited with the expired certificate's identity (a
  // bad signature, a CSR refusal and a replay left none), and the replay records are in the
  // database: another replica (or this one restarted) refuses a request this one accepted.
  it('audits a bad signature, a refused CSR and a replay; a replay is refused by another replica too', async () => {
    clock.set(new Date(realNow - 40 * DAY_MS));
    const depotId = await generate('depot', 'depot');
    clock.set(new Date(realNow));
    const fingerprint = (await t.call(TENANT, 'GET', `/customer/certificates/${depotId}`)).json.certificate.fingerprint_sha256;
    const expired = { cert: file('depot.crt'), key: file('depot.key') };
    const client = await recoveryClient();
    const badSignature = { ...signedRenewalRequest('rec-d-badsig', await csrPem('depot-x'), expired), csr_pem: await csrPem('depot-y') };
    expect((await ask(client, badSignature)).problem?.code).toBe('FORBIDDEN');
    expect((await ask(client, signedRenewalRequest('rec-d-garbage', 'not a CSR', expired))).problem?.code).toBe('INVALID_CSR');
    const good = signedRenewalRequest('rec-d-ok', await csrPem('depot-new'), expired);
    expect((await ask(client, good)).cert_pem).toBeDefined();
    // The same request again: the answer topic is the request's, so a second subscriber is fine.
    expect((await ask(client, good)).problem?.code).toBe('REPLAYED_REQUEST');
    await client.endAsync();

    const replica = await startTestService(database, { dataDir: file('data-replica'), env: { ...serviceEnv, CERTFLEET_DATA_DIR: file('data-replica') }, clock });
    try {
      const signed = { requestId: good.request_id, csrPem: good.csr_pem, certPem: good.cert_pem, signedAt: good.signed_at, signature: good.signature };
      await expect(replica.service.renewal.renewal.recoverWithSignedRequest(signed)).rejects.toMatchObject({ code: 'REPLAYED_REQUEST' });
    } finally {
      await replica.close();
    }

    const events = (await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.recovery_refused&limit=500')).json.audit_events as {
      actor: string;
      target_id: string;
      details: Record<string, unknown>;
    }[];
    const byRequest = new Map(events.map((e) => [String(e.details.request_id), e]));
    for (const [requestId, code] of [
      ['rec-d-badsig', 'FORBIDDEN'],
      ['rec-d-garbage', 'INVALID_CSR'],
      ['rec-d-ok', 'REPLAYED_REQUEST'],
    ]) {
      expect(byRequest.get(requestId), requestId).toMatchObject({
        actor: 'device:TENANT1/depot',
        target_id: String(depotId),
        details: { code, transport: 'mqtt', device_id: 'depot', certificate_id: depotId, fingerprint_sha256: fingerprint, not_after: expect.any(String) },
      });
    }
    // Two replay refusals (this replica's and the other's), one certificate issued.
    expect(events.filter((e) => e.details.request_id === 'rec-d-ok')).toHaveLength(2);
    const list = await t.call(TENANT, 'GET', '/customer/certificates?device_id=depot');
    expect((list.json.certificates ?? list.json.items).length).toBe(2);
  });

  it('an attacker with the recovery login and one expired certificate cannot renew another device', async () => {
    const client = await recoveryClient();
    // The other device's expired certificate, signed with the attacker's (scooter's old) key.
    const forged = signedRenewalRequest('rec-forged', await csrPem('attacker'), { cert: file('other.crt'), key: file('scooter.key') });
    const answer = await ask(client, forged);
    expect(answer.problem?.code).toBe('FORBIDDEN');
    expect(answer.cert_pem).toBeUndefined();
    // Its own expired (and now superseded) certificate gets nothing either.
    const again = await ask(client, signedRenewalRequest('rec-again', await csrPem('attacker-2'), { cert: file('scooter.crt'), key: file('scooter.key') }));
    expect(again.cert_pem).toBeUndefined();
    expect(['CERTIFICATE_SUPERSEDED', 'ROTATION_PENDING', 'FORBIDDEN']).toContain(again.problem?.code);
    await client.endAsync();
    const list = await t.call(TENANT, 'GET', '/customer/certificates?device_id=other');
    expect((list.json.certificates ?? list.json.items).map((c: { id: number }) => c.id)).toEqual([otherId]);
  });

  it('the recovery login reads no device topic, reaches no renewal topic, and cannot take over a device session', async () => {
    // A device with a valid certificate, connected with a known client id.
    clock.set(new Date(realNow - 40 * DAY_MS));
    await generate('online', 'online');
    clock.set(new Date(realNow - 39.5 * DAY_MS));
    const fresh = await t.call(TENANT, 'POST', '/customer/devices/online/certificates/generate', { key_type: 'ec-p256', validity_days: 90 });
    writeFileSync(file('online.crt'), fresh.json.cert_pem);
    writeFileSync(file('online.key'), fresh.json.private_key_pem, { mode: 0o600 });
    clock.set(new Date(realNow));
    const device = await connectDevice('online', 'TENANT1/online');
    let kicked = false;
    device.on('close', () => {
      kicked = true;
    });

    const spy = await recoveryClient({ clientId: 'TENANT1/online' });
    const seen: string[] = [];
    spy.on('message', (topic) => seen.push(topic));
    // Wildcards beyond the answers are refused; the answer wildcard is allowed (answers hold no secret).
    for (const filter of ['#', 'tenant/#', 'tenant/TENANT1/device/online/#', 'certfleet/renew/+/+/response', 'certfleet/recover/request', '$SYS/#']) {
      await expect(spy.subscribeAsync(filter, { qos: 1 }), filter).rejects.toThrow(/Not authorized/);
    }
    await spy.subscribeAsync('certfleet/recover/response/+', { qos: 1 });
    await device.publishAsync('tenant/TENANT1/device/online/telemetry', 'secret', { qos: 1 });
    // A publish to a device's renewal topic is refused (no answer ever comes for it).
    await spy.publishAsync('certfleet/renew/TENANT1/online/request', '{}', { qos: 1 }).catch(() => undefined);
    // The spy's own recovery round trip proves its subscription works and orders the check.
    const own = await ask(spy, { request_id: 'spy-1' });
    expect(own.problem?.code).toBe('VALIDATION_FAILED');
    expect(seen.filter((s) => !s.startsWith('certfleet/recover/response/')), seen.join(' ')).toEqual([]);
    // The device kept its session: it still gets PUBACKs.
    await device.publishAsync('tenant/TENANT1/device/online/telemetry', 'still here', { qos: 1 });
    expect(kicked).toBe(false);
    await spy.endAsync();
    await device.endAsync();
  });

  it('renewal advice: the worker publishes it retained on the device topic; the device reads it, another device cannot', async () => {
    // Two devices whose 2-day certificates are past the middle of their lifetime (valid on the real clock).
    clock.set(new Date(realNow - 1.5 * DAY_MS));
    for (const id of ['advised', 'advised2']) {
      expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
      const res = await t.call(TENANT, 'POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256', validity_days: 2 });
      writeFileSync(file(`${id}.crt`), res.json.cert_pem);
      writeFileSync(file(`${id}.key`), res.json.private_key_pem, { mode: 0o600 });
    }
    clock.set(new Date(realNow));
    expect((await t.call(TENANT, 'PUT', '/customer/renewal-policy', { renewal_window: 0.5, jitter: 0 }, 'tenant-admin')).status).toBe(200);
    const logs: Record<string, unknown>[] = [];
    const worker = await createWorker(t.config, { clock, storage: database.storage, crl: null, logger: captureLogger(logs), holder: 'advice-mqtt' });
    try {
      const reports = await worker.runOnce();
      expect(reports.find((r) => r.task === 'renewal-advice')?.counts).toMatchObject({ published: 2 });
    } finally {
      await worker.close();
    }

    const device = await connectDevice('advised2');
    const got = new Map<string, string>();
    const own = new Promise<void>((resolve) => {
      device.on('message', (topic, payload) => {
        got.set(topic, payload.toString());
        if (topic === 'certfleet/renew/TENANT1/advised2/advice') resolve();
      });
    });
    // Another device's advice first (the broker denies reading it: the plugin refuses the subscription
    // itself, the acl_file accepts it and delivers nothing), then its own (retained, delivered at once).
    const other = device.subscribeAsync('certfleet/renew/TENANT1/advised/advice', { qos: 1 });
    if (mode === 'plugin') await expect(other).rejects.toThrow(/Not authorized/);
    else await other;
    await device.subscribeAsync('certfleet/renew/TENANT1/advised2/advice', { qos: 1 });
    await own;
    expect([...got.keys()]).toEqual(['certfleet/renew/TENANT1/advised2/advice']);
    const advice = JSON.parse(got.get('certfleet/renew/TENANT1/advised2/advice')!);
    expect(advice).toMatchObject({ renew_from: expect.any(String), not_after: expect.any(String), serial_number: expect.any(String), server_time: expect.any(String) });
    expect(Date.parse(advice.renew_from)).toBeLessThanOrEqual(Date.now());
    await device.endAsync();
  });

  it('a session opened before expiry stays open: its renewal request with the expired certificate is a recovery, for its own device only', async () => {
    const device = await connectDevice('online');
    const answers = new Map<string, Answer>();
    const waiting = new Map<string, (a: Answer) => void>();
    device.on('message', (_topic, payload) => {
      const a = JSON.parse(payload.toString()) as Answer;
      answers.set(String(a.request_id), a);
      waiting.get(String(a.request_id))?.(a);
    });
    await device.subscribeAsync('certfleet/renew/TENANT1/online/response', { qos: 1 });
    const askOwn = (message: { request_id: string }) => {
      const answered = new Promise<Answer>((resolve) => waiting.set(message.request_id, resolve));
      void device.publishAsync('certfleet/renew/TENANT1/online/request', JSON.stringify(message), { qos: 1 });
      return answered;
    };
    // certfleet's clock: 60 days later, the 90-day certificate has expired (TLS checked it at connect, when it was valid).
    clock.set(new Date(realNow + 60 * DAY_MS));
    try {
      const at = Math.floor(clock.now().getTime() / 1000);
      const foreign = await askOwn(signedRenewalRequest('own-foreign', await csrPem('online-f'), { cert: file('other.crt'), key: file('other.key') }, at));
      expect(foreign.problem?.code).toBe('FORBIDDEN');
      const renewed = await askOwn(signedRenewalRequest('own-1', await csrPem('online-next'), { cert: file('online.crt'), key: file('online.key') }, at));
      expect(renewed.problem, JSON.stringify(renewed.problem)).toBeUndefined();
      writeFileSync(file('online-next.crt'), renewed.cert_pem!);
      expect(await openssl(['x509', '-in', 'online-next.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'online-next.key', '-pubout']));
      expect(Date.parse(renewed.server_time!)).toBe(clock.now().getTime());
    } finally {
      clock.set(new Date(realNow));
      await device.endAsync();
    }
  });

  it('a wrong recovery password is refused by the broker', async () => {
    await expect(recoveryClient({ password: 'guess' })).rejects.toThrow();
  });
});
