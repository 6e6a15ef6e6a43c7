/**
 * Renewal over MQTT with a real Mosquitto configured by `certfleet broker-config --mqtt-renewal`
 * and run as written: a device (mqtt.js, keys and CSRs made by openssl) asks for a new
 * certificate on its request topic (signed with the key of its current certificate), gets it on its response topic, reconnects with it, confirms
 * with a signature of its new key, and its old certificate is then refused by the broker. The
 * broker's ACL keeps a device off another device's topics; a garbage CSR and a weak key get a
 * problem answer, never a certificate.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFUSAL_AUDIT_BURST } from '../src/domain/refusal-audit-budget.ts';
import type { TestDatabase } from './support/databases.ts';
import { startBrokerTest, type RunningBrokerTest } from './support/broker-fixture.ts';
import { aclPluginPath } from './support/acl-plugin.ts'; // plugin mode (the default where installed); test/mqtt-renewal-takeover.test.ts keeps acl_file mode
import { publishWithMosquittoPub, tlsOptions } from './support/mqtt-clients.ts';
import { signedRenewalRequest } from './support/renewal-request.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const exec = promisify(execFile);
const TENANT = 'TENANT1';

let tmp: string;
let database: TestDatabase;
let t: TestService;
let port: number;
let combinedCa: string;
let serviceEnv: Record<string, string>;

interface Renewed {
  request_id: string | null;
  cert_pem?: string;
  ca_cert_pem?: string;
  rotation?: { new_certificate_id: number; old_certificate_ids: number[]; scheduled_revoke_at: string | null };
  confirmed?: boolean;
  problem?: { code: string; status: number; detail: string };
}

const file = (name: string) => join(tmp, name);

async function openssl(args: string[]): Promise<string> {
  return (await exec('openssl', args, { cwd: tmp })).stdout;
}

async function generate(deviceId: string, name: string): Promise<number> {
  expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
  const res = await t.call(TENANT, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  writeFileSync(file(`${name}.crt`), res.json.cert_pem);
  writeFileSync(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
  return res.json.certificate.id;
}

async function csrPem(name: string, newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']): Promise<string> {
  await openssl(['req', '-new', ...newKey, '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=device', '-out', `${name}.csr`]);
  return readFileSync(file(`${name}.csr`), 'utf8');
}

/** A device connected with one of its certificates, listening on its response topic. */
async function connectDevice(name: string, commonName: string): Promise<{ client: MqttClient; ask(message: object): Promise<Renewed> }> {
  const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
    ...tlsOptions({ port, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }),
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 20_000,
  });
  const waiting = new Map<string, (r: Renewed) => void>();
  client.on('message', (_topic, payload) => {
    const answer = JSON.parse(payload.toString()) as Renewed;
    waiting.get(String(answer.request_id))?.(answer);
  });
  await client.subscribeAsync(`certfleet/renew/${commonName}/response`, { qos: 1 });
  return {
    client,
    ask(message) {
      const id = String((message as { request_id?: string; confirm?: string }).request_id ?? (message as { confirm?: string }).confirm);
      const answered = new Promise<Renewed>((resolve) => waiting.set(id, resolve));
      void client.publishAsync(`certfleet/renew/${commonName}/request`, JSON.stringify(message), { qos: 1 });
      return answered;
    },
  };
}

/** The broker's verdict on one TLS connection with the certificate: 'accepted', 'revoked', or another error's message. */
async function probe(name: string): Promise<string> {
  try {
    const client = await mqtt.connectAsync(
      `mqtts://localhost:${port}`,
      { ...tlsOptions({ port, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 },
      false,
    );
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

let setup: RunningBrokerTest;

beforeAll(async () => {
  setup = await startBrokerTest('mqtt-renewal', { args: () => ['--mqtt-renewal', '--acl-plugin', aclPluginPath()] });
  ({ tmp, database, port } = setup);
  expect(setup.config.env.MQTT_RENEWAL).toBe('true');
  combinedCa = setup.config.files.combinedCa;
  serviceEnv = setup.env;
  t = await startTestService(database, { dataDir: file('data'), env: serviceEnv });
  const started = await t.service.renewal.start(t.service.app.log);
  expect(started.mqtt).toContain(setup.config.env.BROKER_ADMIN_URL);
}, scaled(120_000));

afterAll(async () => {
  await t?.close();
  await setup?.close();
}, scaled(60_000));

describe('renewal over MQTT (real Mosquitto, broker-config --mqtt-renewal)', () => {
  it('the ACL limits each device to its own request and response topic, and lets certfleet answer', () => {
    // Plugin mode: certfleet_acl builds each device's two renewal topics from its CN; the admin reads the requests and writes the responses.
    const conf = readFileSync(file('broker/mosquitto.conf'), 'utf8');
    expect(conf).toMatch(/^plugin .*certfleet_acl\.so\nplugin_opt_grants_file .*\nplugin_opt_admin_username certfleet-admin\nplugin_opt_renewal_topics true$/m);
    expect(conf).not.toMatch(/^acl_file /m);
  });

  it('renews, reconnects with the new certificate, confirms with the new key; the old certificate is then refused', async () => {
    const oldId = await generate('dev-a', 'a-old');
    const device = await connectDevice('a-old', `${TENANT}/dev-a`);
    const request = signedRenewalRequest('r-1', await csrPem('a-new'), { cert: file('a-old.crt'), key: file('a-old.key') });
    const renewed = await device.ask(request);
    expect(renewed.problem).toBeUndefined();
    expect(renewed.rotation?.old_certificate_ids).toEqual([oldId]);
    writeFileSync(file('a-new.crt'), renewed.cert_pem!);
    expect(await openssl(['x509', '-in', 'a-new.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*TENANT1\/dev-a/);
    expect(await openssl(['x509', '-in', 'a-new.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'a-new.key', '-pubout']));
    // The same signed message again (a replay) is refused; a retry signs anew and gets the same certificate.
    expect((await device.ask(request)).problem?.code).toBe('REPLAYED_REQUEST');
    const retry = signedRenewalRequest('r-1b', request.csr_pem, { cert: file('a-old.crt'), key: file('a-old.key') });
    expect((await device.ask(retry)).cert_pem).toBe(renewed.cert_pem);
    await device.client.endAsync();

    // The device switches to its new certificate and confirms with a signature of the new key.
    const next = await connectDevice('a-new', `${TENANT}/dev-a`);
    writeFileSync(file('confirm.txt'), 'certfleet-confirm:r-1');
    await openssl(['dgst', '-sha256', '-sign', 'a-new.key', '-out', 'confirm.sig', 'confirm.txt']);
    const wrongKey = await next.ask({ confirm: 'r-1', signature: Buffer.from('not a signature').toString('base64') });
    expect(wrongKey.problem?.code).toBe('FORBIDDEN');
    const confirmed = await next.ask({ confirm: 'r-1', signature: readFileSync(file('confirm.sig')).toString('base64') });
    expect(confirmed.problem).toBeUndefined();
    expect(confirmed.confirmed).toBe(true);
    await next.client.endAsync();

    const old = (await t.call(TENANT, 'GET', `/customer/certificates/${oldId}`)).json.certificate;
    expect(old.status).toBe('REVOKED');
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ confirmed_via: string }>('SELECT confirmed_via FROM certificate_rotations WHERE old_certificate_id = $1', [oldId]),
    );
    expect(rows).toEqual([{ confirmed_via: 'mqtt' }]);

    // certfleet republishes the CRL and reloads the broker: the old certificate is refused.
    const until = Date.now() + 30_000;
    let verdict = await probe('a-old');
    while (verdict !== 'revoked' && Date.now() < until) verdict = await probe('a-old');
    expect(verdict).toBe('revoked');
    expect(await probe('a-new')).toBe('accepted');
  });

  it('a device cannot publish a request for another device: the broker denies it', async () => {
    await generate('dev-b', 'b');
    await generate('dev-c', 'c');
    const spoof = await publishWithMosquittoPub({
      port,
      cafile: combinedCa,
      cert: file('b.crt'),
      key: file('b.key'),
      topic: `certfleet/renew/${TENANT}/dev-c/request`,
      message: JSON.stringify(signedRenewalRequest('spoof', await csrPem('b-for-c'), { cert: file('b.crt'), key: file('b.key') })),
      timeoutMs: 20_000,
    });
    // MQTT 5: the broker answers the PUBLISH with reason code 135, not authorized.
    expect(spoof.output).toMatch(/not authori[sz]ed/i);
    expect(spoof.ok).toBe(false);
    expect((await t.call(TENANT, 'GET', '/customer/devices/dev-c/certificates/rotation')).status).toBe(404);
  });

  it('answers a garbage CSR, a weak key and a malformed message with a problem, never a certificate', async () => {
    const device = await connectDevice('c', `${TENANT}/dev-c`);
    const current = { cert: file('c.crt'), key: file('c.key') };
    const garbage = await device.ask(signedRenewalRequest('g', 'not a CSR', current));
    expect(garbage.problem?.code).toBe('INVALID_CSR');
    const weak = await device.ask(signedRenewalRequest('w', await csrPem('c-weak', ['-newkey', 'rsa:1024']), current));
    expect(weak.problem?.code).toBe('WEAK_KEY');
    const missing = await device.ask({ request_id: 'm' });
    expect(missing.problem?.code).toBe('VALIDATION_FAILED');
    // Unsigned (the old format), stale, or signed over another CSR: refused before any CSR is looked at.
    const unsigned = await device.ask({ request_id: 'u', csr_pem: await csrPem('c-u') });
    expect(unsigned.problem?.code).toBe('VALIDATION_FAILED');
    const stale = await device.ask(signedRenewalRequest('s', await csrPem('c-s'), current, Math.floor(Date.now() / 1000) - 3600));
    expect(stale.problem?.code).toBe('FORBIDDEN');
    const swapped = { ...signedRenewalRequest('x', await csrPem('c-x'), current), csr_pem: await csrPem('c-y') };
    expect((await device.ask(swapped)).problem?.code).toBe('FORBIDDEN');
    expect(garbage.cert_pem ?? weak.cert_pem ?? missing.cert_pem ?? unsigned.cert_pem ?? stale.cert_pem).toBeUndefined();
    await device.client.endAsync();
    expect((await t.call(TENANT, 'GET', '/customer/devices/dev-c/certificates/rotation')).status).toBe(404);
  });
  // Issue 21 item 7: a refused renewal leaves an audit event with the presenting certificate's
  // identity (it left none for a CSR refusal, a bad signature or a replay), and issues nothing.
  it('audits every refusal with the presenting certificate, issues nothing', async () => {
    const refusals = async () =>
      (await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.renewal_refused&limit=500')).json.audit_events as {
        actor: string;
        target_id: string;
        details: Record<string, unknown>;
      }[];
    const certificates = async () =>
      database.db.asOperator(async (tx) => Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM device_certificates`)).rows[0].n));
    const eId = await generate('dev-e', 'e');
    const fingerprint = (await t.call(TENANT, 'GET', `/customer/certificates/${eId}`)).json.certificate.fingerprint_sha256;
    // A key revoked for keyCompromise (another device's).
    const kId = await generate('dev-k', 'k');
    expect((await t.call(TENANT, 'POST', `/customer/certificates/${kId}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await openssl(['req', '-new', '-key', 'k.key', '-subj', '/CN=device', '-out', 'k-again.csr']);

    const device = await connectDevice('e', `${TENANT}/dev-e`);
    const current = { cert: file('e.crt'), key: file('e.key') };
    const before = await certificates();
    const asked: Array<[string, object]> = [
      ['INVALID_CSR', signedRenewalRequest('ra-garbage', 'not a CSR', current)],
      ['WEAK_KEY', signedRenewalRequest('ra-weak', await csrPem('e-weak', ['-newkey', 'rsa:1024']), current)],
      ['KEY_COMPROMISED', signedRenewalRequest('ra-compromised', readFileSync(file('k-again.csr'), 'utf8'), current)],
      ['FORBIDDEN', { ...signedRenewalRequest('ra-badsig', await csrPem('e-x'), current), csr_pem: await csrPem('e-y') }],
      ['FORBIDDEN', signedRenewalRequest('ra-stale', await csrPem('e-s'), current, Math.floor(Date.now() / 1000) - 3600)],
    ];
    for (const [code, message] of asked) {
      const answer = await device.ask(message);
      expect(answer.problem?.code, JSON.stringify(answer)).toBe(code);
      expect(answer.cert_pem).toBeUndefined();
    }
    expect(await certificates()).toBe(before);

    // One renewal succeeds; its replay, and a request for another key while it is pending, are refused.
    const renewed = signedRenewalRequest('ra-ok', await csrPem('e-new'), current);
    expect((await device.ask(renewed)).cert_pem).toBeDefined();
    expect((await device.ask(renewed)).problem?.code).toBe('REPLAYED_REQUEST');
    expect((await device.ask(signedRenewalRequest('ra-other', await csrPem('e-other'), current))).problem?.code).toBe('ROTATION_PENDING');
    expect(await certificates()).toBe(before + 1);
    await device.client.endAsync();

    const events = await refusals();
    const byRequest = new Map(events.map((e) => [String(e.details.request_id), e]));
    for (const [requestId, code] of [
      ['ra-garbage', 'INVALID_CSR'],
      ['ra-weak', 'WEAK_KEY'],
      ['ra-compromised', 'KEY_COMPROMISED'],
      ['ra-badsig', 'FORBIDDEN'],
      ['ra-stale', 'FORBIDDEN'],
      ['ra-ok', 'REPLAYED_REQUEST'],
      ['ra-other', 'ROTATION_PENDING'],
    ]) {
      expect(byRequest.get(requestId), requestId).toMatchObject({
        actor: `device:${TENANT}/dev-e`,
        target_id: String(eId),
        details: { code, transport: 'mqtt', device_id: 'dev-e', certificate_id: eId, fingerprint_sha256: fingerprint },
      });
    }
  });

  it('a request carrying another device’s certificate is audited in the publishing device’s tenant', async () => {
    await generate('dev-f', 'f');
    const device = await connectDevice('f', `${TENANT}/dev-f`);
    const answer = await device.ask(signedRenewalRequest('ra-foreign', await csrPem('f-x'), { cert: file('e.crt'), key: file('e.key') }));
    expect(answer.problem?.code).toBe('FORBIDDEN');
    await device.client.endAsync();
    const events = (await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.renewal_refused&limit=500')).json.audit_events as { actor: string; details: Record<string, unknown> }[];
    expect(events.find((e) => e.details.request_id === 'ra-foreign')).toMatchObject({
      actor: `device:${TENANT}/dev-f`,
      details: { code: 'FORBIDDEN', device_id: 'dev-f', presented_certificate: { common_name: `${TENANT}/dev-e` } },
    });
  });

  // One device certificate must not be able to fill the audit log: a device's refusals are audited up
  // to a burst, then at a steady rate; the next audited one says how many were not.
  it('audits a flood of refusals from one device up to a budget, and counts the ones it did not audit', async () => {
    await generate('dev-h', 'h');
    const refusalsOf = async (deviceId: string) =>
      ((await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.renewal_refused&limit=500')).json.audit_events as { details: Record<string, unknown> }[]).filter(
        (e) => e.details.device_id === deviceId,
      );
    const badSignature = async (n: number) => {
      const request = { ...signedRenewalRequest(`flood-${n}`, await csrPem('h-x'), { cert: file('h.crt'), key: file('h.key') }), csr_pem: await csrPem('h-y') };
      const signed = { requestId: request.request_id, csrPem: request.csr_pem, certPem: request.cert_pem, signedAt: request.signed_at, signature: request.signature };
      await expect(t.service.renewal.renewal.authenticateSignedRequest(`${TENANT}/dev-h`, signed)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    };
    for (let n = 0; n < REFUSAL_AUDIT_BURST + 15; n++) await badSignature(n);
    const audited = await refusalsOf('dev-h');
    expect(audited).toHaveLength(REFUSAL_AUDIT_BURST);
    expect(audited.every((e) => e.details.suppressed_refusals === undefined)).toBe(true);
    // Another device of the tenant still has its own budget.
    expect((await refusalsOf('dev-e')).length).toBeGreaterThan(0);
    // A minute later the budget has room again: the next refusal is audited with the count of those that were not.
    t.clock.advance(60_000);
    await badSignature(1000);
    const after = await refusalsOf('dev-h');
    expect(after).toHaveLength(REFUSAL_AUDIT_BURST + 1);
    expect(after.find((e) => e.details.request_id === 'flood-1000')?.details).toMatchObject({ code: 'FORBIDDEN', suppressed_refusals: 15 });
  });

  // Issue 21 item 7: the replay records are in the database (they were a map in each process):
  // another replica, or this one restarted, refuses a request this one accepted.
  it('a request accepted once is refused as a replay by another replica (or after a restart) on the same database', async () => {
    await generate('dev-g', 'g');
    const device = await connectDevice('g', `${TENANT}/dev-g`);
    const request = signedRenewalRequest('ra-replica', await csrPem('g-new'), { cert: file('g.crt'), key: file('g.key') });
    expect((await device.ask(request)).cert_pem).toBeDefined();
    await device.client.endAsync();
    const replica = await startTestService(database, { dataDir: file('data-replica'), env: { ...serviceEnv, CERTFLEET_DATA_DIR: file('data-replica') } });
    try {
      const signed = { requestId: request.request_id, csrPem: request.csr_pem, certPem: request.cert_pem, signedAt: request.signed_at, signature: request.signature };
      await expect(replica.service.renewal.renewal.authenticateSignedRequest(`${TENANT}/dev-g`, signed)).rejects.toMatchObject({ code: 'REPLAYED_REQUEST' });
    } finally {
      await replica.close();
    }
  });
});
