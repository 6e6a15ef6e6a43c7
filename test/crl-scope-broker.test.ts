/**
 * CRL scope with a real Mosquitto: the CRL file the broker reads covers every certificate of the
 * Device CA, whatever CRL Distribution Point it carries. A certificate issued before a
 * PUBLIC_BASE_URL change, and imported certificates with another distribution point or none, are
 * accepted before revocation and refused after it. (With an Issuing Distribution Point in the
 * CRL, OpenSSL refuses all three even unrevoked: "different CRL scope".)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { run } from './support/openssl.ts';
import { startTestService, type TestService } from './support/service.ts';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './support/broker-fixture.ts';
import { scaled } from './support/timeouts.ts';

const TENANT = 'scope';
const OLD_BASE = 'http://certfleet-old.example:8080';
const NEW_BASE = 'https://certfleet.example';

interface DeviceCert {
  id: number;
  name: string;
  cert: string;
  key: string;
}

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let brokerPort: number;
let combinedCa: string;
let broker: RunningMosquitto;
let t: TestService | null = null;

const startService = (publicBaseUrl: string) => startTestService(database, { dataDir: join(tmp, 'data'), env: { ...env, PUBLIC_BASE_URL: publicBaseUrl } });

function mustRun(cmd: string, args: string[]) {
  const r = run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}

/** One connection attempt: accepted, refused as revoked (TLS alert 44), or another error. */
async function probe(c: DeviceCert): Promise<string> {
  try {
    const client = await mqtt.connectAsync(
      `mqtts://localhost:${brokerPort}`,
      { ...tlsOptions({ port: brokerPort, cafile: combinedCa, cert: c.cert, key: c.key }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 },
      false,
    );
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

async function eventually(c: DeviceCert, outcome: 'revoked', timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  let last = '';
  while ((last = await probe(c)) !== outcome) {
    if (Date.now() > until) throw new Error(`${c.name}: still "${last}" after ${timeoutMs} ms, expected ${outcome}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function generate(service: TestService, deviceId: string): Promise<DeviceCert> {
  const reg = await service.call(TENANT, 'POST', '/customer/devices', { device_id: deviceId });
  expect(reg.status).toBe(201);
  const res = await service.call(TENANT, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  const cert = join(tmp, 'certs', `${deviceId}.crt`);
  const key = join(tmp, 'certs', `${deviceId}.key`);
  writeFileSync(cert, res.json.cert_pem);
  writeFileSync(key, res.json.private_key_pem, { mode: 0o600 });
  return { id: res.json.certificate.id, name: deviceId, cert, key };
}

/** A certificate made by openssl with the CA key (issued before certfleet), then imported. */
async function importMade(service: TestService, deviceId: string, crlDp: string | null): Promise<DeviceCert> {
  const key = join(tmp, 'certs', `${deviceId}.key`);
  const csr = join(tmp, 'certs', `${deviceId}.csr`);
  const cert = join(tmp, 'certs', `${deviceId}.crt`);
  const ext = join(tmp, 'certs', `${deviceId}.ext`);
  mustRun('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${TENANT}\\/${deviceId}`, '-out', csr]);
  const lines = ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = clientAuth'];
  if (crlDp) lines.push(`crlDistributionPoints = URI:${crlDp}`);
  writeFileSync(ext, lines.join('\n') + '\n');
  mustRun('openssl', ['x509', '-req', '-in', csr, '-CA', env.DEVICE_CA_CERT_PATH, '-CAkey', env.DEVICE_CA_KEY_PATH, '-CAcreateserial', '-days', '30', '-extfile', ext, '-out', cert]);
  const text = mustRun('openssl', ['x509', '-in', cert, '-noout', '-text']);
  if (crlDp) expect(text).toContain(`URI:${crlDp}`);
  else expect(text).not.toContain('CRL Distribution Points');
  expect((await service.call(TENANT, 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
  const res = await service.call(TENANT, 'POST', `/customer/devices/${deviceId}/certificates/import`, { cert_pem: readFileSync(cert, 'utf8') });
  expect(res.status, res.body).toBe(201);
  return { id: res.json.certificate.id, name: deviceId, cert, key };
}

beforeAll(async () => {
  ({ tmp, database, env } = await brokerTestFixture('scope'));
  brokerPort = await freePort();
  const config = await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(brokerPort), '--no-kick']);
  combinedCa = config.files.combinedCa;
  broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
  env = { ...env, ...config.env };
}, scaled(120_000));

afterAll(() => closeBrokerTest({ service: t, broker, database, tmp }), 60_000);

describe('the broker’s CRL file covers every certificate of the CA, whatever its CRL Distribution Point', () => {
  it('accepts them before revocation and refuses them after: issued before a PUBLIC_BASE_URL change, imported with another or no CRL DP', async () => {
    t = await startService(OLD_BASE);
    const before = await generate(t, 'ISSUED-BEFORE');
    expect(run('openssl', ['x509', '-in', before.cert, '-noout', '-text']).out).toContain(`URI:${OLD_BASE}/pki/crl`);
    await t.close();

    t = await startService(NEW_BASE);
    const after = await generate(t, 'ISSUED-AFTER');
    expect(run('openssl', ['x509', '-in', after.cert, '-noout', '-text']).out).toContain(`URI:${NEW_BASE}/pki/crl`);
    const otherDp = await importMade(t, 'IMPORTED-OTHER-DP', 'http://legacy-pki.example/device.crl');
    const noDp = await importMade(t, 'IMPORTED-NO-DP', null);
    await t.service.crl.publisher!.idle();

    const all = [before, after, otherDp, noDp];
    for (const c of all) expect(`${c.name}: ${await probe(c)}`).toBe(`${c.name}: accepted`);

    for (const c of [before, otherDp, noDp]) {
      const res = await t.call(TENANT, 'POST', `/customer/certificates/${c.id}/revoke`, { reason: 'keyCompromise' });
      expect(res.status, res.body).toBe(200);
      await eventually(c, 'revoked');
    }
    expect(`${after.name}: ${await probe(after)}`).toBe(`${after.name}: accepted`);
  }, scaled(180_000));
});
