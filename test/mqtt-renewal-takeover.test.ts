/**
 * Regression test of issue 18's critical finding, with a real Mosquitto configured by
 * `certfleet broker-config --mqtt-renewal` and run as written: a device of tenant `certfleet`
 * named `renew` has the CN `certfleet/renew`; the old `pattern readwrite %u/#` then covered
 * every device's renewal topics (`certfleet/renew/#`), and certfleet took the topic as the
 * identity, so the attacker got a certificate with the victim's CN for its own key.
 *
 * Now: the ids are refused at registration (RESERVED_ID); a device that already has them (put
 * in the database directly, as an old installation may have it) still gets nothing of the
 * victim's topics from the broker; and a renewal request must prove possession of the key of
 * the requesting device's current certificate, whose CN must be the topic's.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/databases.ts';
import { startBrokerTest, type RunningBrokerTest } from './support/broker-fixture.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { run } from './support/openssl.ts';
import { signedRenewalRequest } from './support/renewal-request.ts';
import { startTestService, type TestService } from './support/service.ts';

const VICTIM_TENANT = 'TA';
const VICTIM = 'VICTIM';

let tmp: string;
let database: TestDatabase;
let t: TestService;
let port: number;
let combinedCa: string;

const file = (name: string) => join(tmp, 'certs', name);

async function generate(tenant: string, deviceId: string, name: string): Promise<number> {
  const res = await t.call(tenant, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  writeFileSync(file(`${name}.crt`), res.json.cert_pem);
  writeFileSync(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
  return res.json.certificate.id;
}

function newCsr(name: string): string {
  const r = run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', file(`${name}.key`), '-subj', '/CN=device', '-out', file(`${name}.csr`)]);
  expect(r.code, r.out).toBe(0);
  return readFileSync(file(`${name}.csr`), 'utf8');
}

/** A renewal request signed with the key of the device's current certificate (docs/device-renewal.md). */
const signedRequest = (requestId: string, csrPem: string, certName: string) =>
  signedRenewalRequest(requestId, csrPem, { cert: file(`${certName}.crt`), key: file(`${certName}.key`) });

async function connect(name: string): Promise<MqttClient> {
  return mqtt.connectAsync(`mqtts://localhost:${port}`, {
    ...tlsOptions({ port, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }),
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 20_000,
  });
}

let setup: RunningBrokerTest;

beforeAll(async () => {
  setup = await startBrokerTest('takeover', { args: () => ['--mqtt-renewal'] });
  ({ tmp, database, port } = setup);
  combinedCa = setup.config.files.combinedCa;
  t = await startTestService(database, { dataDir: join(tmp, 'data'), env: setup.env });
  await t.service.renewal.start(t.service.app.log);
}, 120_000);

afterAll(async () => {
  await t?.close();
  await setup?.close();
}, 60_000);

describe('issue 18: a device named certfleet/renew cannot take over another device over MQTT renewal', () => {
  it('refuses the tenant id certfleet at registration, with a stable code', async () => {
    // No request can even act for the tenant certfleet: its tokens are refused (it holds certfleet's own devices, the broker canaries).
    const res = await t.call('certfleet', 'POST', '/customer/devices', { device_id: 'renew' });
    expect(res.status, res.body).toBe(401);
    expect(res.json.detail).toMatch(/reserved/);
    const device = await t.call(VICTIM_TENANT, 'POST', '/customer/devices', { device_id: 'certfleet' });
    expect(device.status, device.body).toBe(422);
    expect(device.json.code).toBe('RESERVED_ID');
  });

  it('an existing certfleet/renew device gets neither the victim’s renewal topics nor a certificate for the victim', async () => {
    expect((await t.call(VICTIM_TENANT, 'POST', '/customer/devices', { device_id: VICTIM })).status).toBe(201);
    const victimCert = await generate(VICTIM_TENANT, VICTIM, 'victim');
    // An installation that registered it before the refusal existed: inserted directly.
    await database.db.asOperator((tx) => tx.query(`INSERT INTO device_registry (tenant_id, device_id) VALUES ('certfleet', 'renew') ON CONFLICT DO NOTHING`));
    const issued = await t.service.useCases.issueCertificate({ id: 'test:existing-install', tenantId: 'certfleet' }, 'renew', { validityDays: 30, key: { kind: 'generate', keyType: 'ec-p256' } });
    writeFileSync(file('attacker.crt'), issued.cert_pem);
    writeFileSync(file('attacker.key'), issued.private_key_pem!, { mode: 0o600 });

    const attacker = await connect('attacker');
    const got: Array<{ topic: string; payload: string }> = [];
    attacker.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    const victimResponse = `certfleet/renew/${VICTIM_TENANT}/${VICTIM}/response`;
    const ownResponse = 'certfleet/renew/certfleet/renew/response';
    const granted = await attacker.subscribeAsync([victimResponse, ownResponse], { qos: 1 });
    expect(granted.find((g) => g.topic === ownResponse)?.qos).toBe(1);

    // The attack: a CSR for the attacker's key on the victim's request topic, signed with the attacker's own certificate.
    const attack = attacker.publishAsync(`certfleet/renew/${VICTIM_TENANT}/${VICTIM}/request`, JSON.stringify(signedRequest('attack', newCsr('stolen'), 'attacker')), { qos: 1 });
    await expect(attack).rejects.toThrow(/not authori[sz]ed|135/i);

    // A fence: the attacker's own (legitimate) renewal is answered after the attack was handled.
    const answered = new Promise<Record<string, unknown>>((resolve) => {
      attacker.on('message', (topic, payload) => {
        if (topic === ownResponse) resolve(JSON.parse(payload.toString()) as Record<string, unknown>);
      });
    });
    await attacker.publishAsync('certfleet/renew/certfleet/renew/request', JSON.stringify(signedRequest('own', newCsr('attacker-next'), 'attacker')), { qos: 1 });
    expect((await answered).request_id).toBe('own');
    await attacker.endAsync();

    expect(got.filter((m) => m.topic === victimResponse)).toEqual([]);
    const victimCerts = await t.call(VICTIM_TENANT, 'GET', `/customer/certificates?device_id=${VICTIM}`);
    expect(victimCerts.json.certificates.map((c: { id: number; status: string }) => [c.id, c.status])).toEqual([[victimCert, 'ACTIVE']]);
    expect((await t.call(VICTIM_TENANT, 'GET', `/customer/devices/${VICTIM}/certificates/rotation`)).status).toBe(404);
    const audit = await database.db.asOperator((tx) =>
      tx.query<{ n: string }>(`SELECT count(*) AS n FROM audit_events WHERE tenant_id = $1 AND actor LIKE 'device:%'`, [VICTIM_TENANT]),
    );
    expect(Number(audit.rows[0].n)).toBe(0);
  });

  it('a request on the device’s own topic that carries another device’s certificate is refused (proof of possession)', async () => {
    const attacker = await connect('attacker');
    const ownResponse = 'certfleet/renew/certfleet/renew/response';
    const answered = new Promise<Record<string, unknown>>((resolve) => {
      attacker.on('message', (topic, payload) => {
        if (topic === ownResponse) resolve(JSON.parse(payload.toString()) as Record<string, unknown>);
      });
    });
    await attacker.subscribeAsync(ownResponse, { qos: 1 });
    // The victim's certificate is not secret; its key is. Signed with the attacker's key: refused.
    const forged = { ...signedRequest('forged', newCsr('forged'), 'attacker'), cert_pem: readFileSync(file('victim.crt'), 'utf8') };
    await attacker.publishAsync('certfleet/renew/certfleet/renew/request', JSON.stringify(forged), { qos: 1 });
    const answer = await answered;
    await attacker.endAsync();
    expect(answer.cert_pem).toBeUndefined();
    expect((answer.problem as { code: string }).code).toBe('FORBIDDEN');
  });
});
