/**
 * Tenant CA scope binding at the broker (issue 19, per-tenant CAs), with a real Mosquitto
 * configured by `certfleet broker-config --acl-plugin ... --mqtt-renewal` and run as written, and
 * certfleet keeping the broker's trust files (BROKER_CA_PATH, the CA scope map beside it).
 *
 * The attacker holds tenant TA's account and TA's own issuing CA (imported with its key: "bring
 * your own CA"), which the broker trusts because TA's devices must connect. With it the attacker
 * signs certificates whose CN names tenant TB's device (`TB/victim`) and certfleet's broker admin
 * (`certfleet-admin`). The broker's TLS accepts them (the CA is in its cafile); the certfleet_acl
 * plugin refuses them at CONNECT (plugin_opt_device_login: the device listener does not take the
 * identity as username, so Mosquitto asks the plugin before it hands over a session of the same
 * client id). Session takeover: a forged CN with the victim's client id, and TA's own genuine
 * device presenting the victim's client id, are refused and the victim's live connection stays
 * (shown failing before the plugin's login check: "Client TB/victim already connected, closing old
 * connection"); the victim's persistent session keeps what was queued for it. A certificate of the
 * global CA keeps working for any tenant, and TA's CA keeps working for TA's own devices. A missing
 * scope map fails closed (no certificate client gets in).
 */
import 'reflect-metadata';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { publishQos1, subscribeCodes, waitFor } from './support/acl-matrix.ts';
import { aclPluginPath } from './support/acl-plugin.ts';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { run } from './support/openssl.ts';
import { brokerCovers, brokerTrustFiles, waitForBrokerTrust } from './support/rollover.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const CAS = '/api/v1/operator/cas';

let tmp: string;
let database: TestDatabase;
let broker: RunningMosquitto;
let t: TestService;
let port: number;
let combinedCa: string;
let trustFiles: { cafile: string; crlfile: string; capath?: string };
let taCaFiles: { cert: string; key: string };
const clients: MqttClient[] = [];

interface Files {
  cert: string;
  key: string;
}

const file = (name: string) => join(tmp, 'certs', name);

function mustRun(cmd: string, args: string[]) {
  const r = run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
  return r.out;
}

/** What the attacker does with TA's CA key: a client certificate with any CN, signed by openssl. */
function forge(name: string, commonName: string): Files {
  const key = file(`${name}.key`);
  const csr = file(`${name}.csr`);
  const cert = file(`${name}.crt`);
  const ext = file(`${name}.ext`);
  mustRun('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${commonName.replace(/([/+])/g, '\\$1')}`, '-out', csr]);
  writeFileSync(ext, 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n');
  mustRun('openssl', ['x509', '-req', '-in', csr, '-CA', taCaFiles.cert, '-CAkey', taCaFiles.key, '-CAcreateserial', '-days', '30', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

/** A certificate certfleet issues to a registered device (its tenant's active CA signs it). */
async function generate(tenant: string, deviceId: string): Promise<Files & { pem: string }> {
  const reg = await t.call(tenant, 'POST', '/api/v1/customer/devices', { device_id: deviceId });
  expect([201, 409], reg.body).toContain(reg.status);
  const res = await t.call(tenant, 'POST', `/api/v1/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  const cert = file(`${tenant}-${deviceId}.crt`);
  const key = file(`${tenant}-${deviceId}.key`);
  writeFileSync(cert, res.json.cert_pem);
  writeFileSync(key, res.json.private_key_pem, { mode: 0o600 });
  return { cert, key, pem: res.json.cert_pem };
}

async function connect(files: Files, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
    ...tlsOptions({ port, cafile: combinedCa, ...files }),
    protocolVersion: 5,
    reconnectPeriod: 0,
    connectTimeout: 20_000,
    ...options,
  });
  clients.push(client);
  return client;
}

const granted = async (client: MqttClient, topic: string) => (await subscribeCodes(client, [topic], 1))[0]!.qos;

/** A CONNECT that must be refused: its reason code (MQTT 5: 135 not authorised), or 'accepted'. */
async function refused(files: Files, options: mqtt.IClientOptions = {}): Promise<number | 'accepted'> {
  try {
    const client = await connect(files, options);
    await client.endAsync(true);
    return 'accepted';
  } catch (e) {
    return (e as { code?: number }).code ?? -1;
  }
}

/**
 * The victim connected with its CN as client id (what certfleet's devices do); then `attempt`
 * (an impostor's CONNECT with the same client id) is made. The victim's connection must survive:
 * no close, no takeover line in the broker's log, and a QoS 1 round trip after the attempt.
 */
async function victimSurvives(attempt: () => Promise<number | 'accepted'>): Promise<number | 'accepted'> {
  const live = await connect(victim, { clientId: 'TB/victim' });
  let closed = 0;
  live.on('close', () => closed++);
  expect(await granted(live, 'tenant/TB/device/victim/#')).toBe(1);
  const offset = broker.logs().length;
  const outcome = await attempt();
  expect(broker.logs().slice(offset)).not.toMatch(/Client TB\/victim already connected, closing old connection/);
  expect(await publishQos1(live, 'tenant/TB/device/victim/telemetry', 'still-here')).toBe(true);
  expect(closed, "the victim's connection was closed").toBe(0);
  expect(live.connected).toBe(true);
  await live.endAsync(true);
  return outcome;
}
const issuerOf = (pem: string) => new x509.X509Certificate(pem).issuer;

let victim: Files & { pem: string };
let taOwn: Files & { pem: string };
let taGlobal: Files & { pem: string };
let taCaSubject: string;
let globalCaSubject: string;

beforeAll(async () => {
  let env: Record<string, string>;
  ({ tmp, database, env } = await brokerTestFixture('ca-scope'));
  port = await freePort();
  const config = await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(port), '--acl-plugin', aclPluginPath(), '--mqtt-renewal']);
  combinedCa = config.files.combinedCa;
  trustFiles = brokerTrustFiles(config.files.config);
  broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
  t = await startTestService(database, { dataDir: join(tmp, 'data'), env: { ...env, ...config.env, BROKER_CA_PATH: trustFiles.cafile } });
  globalCaSubject = new x509.X509Certificate(readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8')).subject;

  // Before TA has a CA of its own: a TA device under the global CA, and TB's victim.
  taGlobal = await generate('TA', 'ta-global');
  victim = await generate('TB', 'victim');

  // TA brings its own CA (the key stays with TA too: that is the attacker's tool).
  const taCa = await createDeviceCa({ now: new Date(), commonName: 'Tenant TA own issuing CA' });
  taCaFiles = { cert: file('ta-ca.crt'), key: file('ta-ca.key') };
  writeFileSync(taCaFiles.cert, taCa.certPem);
  writeFileSync(taCaFiles.key, taCa.keyPem, { mode: 0o600 });
  const since = broker.logs().length;
  const imported = await t.call(null, 'POST', `${CAS}/import`, { cert_pem: taCa.certPem, key_pem: taCa.keyPem, tenant_id: 'TA' }, 'operator-admin');
  expect(imported.status, imported.body).toBe(201);
  const id = (imported.json.ca ?? imported.json).id as string;
  const activated = await t.call(null, 'POST', `${CAS}/${id}/activate`, {}, 'operator-admin');
  expect(activated.status, activated.body).toBe(200);
  const taCaCert = new x509.X509Certificate(taCa.certPem);
  taCaSubject = taCaCert.subject;
  await waitForBrokerTrust(broker, trustFiles, since, async (trust) => Object.values(await brokerCovers(trust, taCaCert)).every(Boolean), "TA's CA and its CRL in the broker's files, then a reload", scaled(60_000));
  taOwn = await generate('TA', 'ta-own');
}, scaled(180_000));

afterAll(async () => {
  for (const c of clients) await c.endAsync(true).catch(() => undefined);
  if (process.env.SHOW_BROKER_LOGS) console.log(broker?.logs());
  await closeBrokerTest({ service: t, broker, database, tmp });
}, scaled(60_000));

describe("a tenant CA cannot sign for another tenant's devices or certfleet's admin (plugin mode)", () => {
  it('the setup is what it claims: TA’s devices are signed by TA’s CA from its activation, the others by the global CA', () => {
    expect(issuerOf(taOwn.pem)).toBe(taCaSubject);
    expect(issuerOf(taGlobal.pem)).toBe(globalCaSubject);
    expect(issuerOf(victim.pem)).toBe(globalCaSubject);
  });

  it("session takeover: TA's CA signing TB's device CN with TB's client id is refused at CONNECT; the victim's live connection stays", async () => {
    const offset = broker.logs().length;
    expect(await victimSurvives(() => refused(forge('takeover', 'TB/victim'), { clientId: 'TB/victim' }))).toBe(135);
    // Refused by certfleet_acl at CONNECT (after the TLS handshake, which accepted TA's CA: the test is not vacuous).
    await broker.waitForLog(/certfleet_acl: certificate login refused: CN TB\/victim \(client id TB\/victim\) is outside the scope/, scaled(10_000), offset);
  });

  it("session takeover with an in-scope certificate: TA's own device presenting TB's device client id is refused at CONNECT", async () => {
    const offset = broker.logs().length;
    expect(await victimSurvives(() => refused(taOwn, { clientId: 'TB/victim' }))).toBe(135);
    await broker.waitForLog(/certfleet_acl: certificate login refused: client id TB\/victim names another device than the certificate's CN TA\/ta-own/, scaled(10_000), offset);
    // Client ids below the own CN, and without "/", stay the device's choice.
    for (const clientId of ['TA/ta-own', 'TA/ta-own/second', 'ta-own-free-form']) {
      const c = await connect(taOwn, { clientId });
      expect(await granted(c, 'tenant/TA/device/ta-own/#'), clientId).toBe(1);
    }
    // ... but not a sibling's name that merely starts with the CN.
    expect(await refused(taOwn, { clientId: 'TA/ta-own-sibling' })).toBe(135);
  });

  it("TA's CA signing TB's device CN: refused at CONNECT (after TLS took it), so it gets none of TB's topics", async () => {
    const offset = broker.logs().length;
    expect(await refused(forge('impostor', 'TB/victim'))).toBe(135);
    // An MQTT refusal (CONNACK 135), logged by certfleet_acl: the TLS handshake accepted TA's CA (the test is not vacuous).
    await broker.waitForLog(/certfleet_acl: certificate login refused: CN TB\/victim \(client id [^)]*\) is outside the scope/, scaled(10_000), offset);
    const victimClient = await connect(victim);
    const seen: string[] = [];
    victimClient.on('message', (topic, payload) => seen.push(`${topic}|${payload.toString()}`));
    expect(await granted(victimClient, 'tenant/TB/device/victim/#')).toBe(1);
    expect(await publishQos1(victimClient, 'tenant/TB/device/victim/telemetry', 'genuine')).toBe(true);
    await waitFor(() => seen.includes('tenant/TB/device/victim/telemetry|genuine'), 'the victim to receive its own message');
  });

  it("the impostor cannot resume the victim's persistent session (same client id): refused, and the session keeps what was queued for the victim", async () => {
    const clientId = 'TB/victim/session';
    const session = await connect(victim, { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } });
    expect(await granted(session, 'tenant/TB/device/victim/inbox')).toBe(1);
    await session.endAsync(true); // the session (and its subscription) stays on the broker

    expect(await refused(forge('session-impostor', 'TB/victim'), { clientId, clean: false, properties: { sessionExpiryInterval: 3600 } })).toBe(135);
    const sender = await connect(victim, { clientId: 'TB/victim/sender' });
    expect(await publishQos1(sender, 'tenant/TB/device/victim/inbox', 'secret')).toBe(true);
    // The victim resumes its own session and receives the message queued while it was away.
    const got: string[] = [];
    // Its message handler is in place before the CONNECT: the queued message comes right after the CONNACK.
    const resumed = mqtt.connect(`mqtts://localhost:${port}`, {
      ...tlsOptions({ port, cafile: combinedCa, ...victim }),
      protocolVersion: 5,
      reconnectPeriod: 0,
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      manualConnect: true,
    });
    clients.push(resumed);
    resumed.on('message', (topic, payload) => got.push(`${topic}|${payload.toString()}`));
    resumed.connect();
    await waitFor(() => got.includes('tenant/TB/device/victim/inbox|secret'), "the victim's resumed session to deliver the queued message");
  });

  it("TA's CA signing certfleet's admin username is refused at CONNECT", async () => {
    expect(await refused(forge('fake-admin', 'certfleet-admin'))).toBe(135);
  });

  it("TA's CA signing certfleet's reserved tenant or a CN without a tenant is refused at CONNECT", async () => {
    for (const cn of ['certfleet/canary', 'certfleet-recovery', 'victim']) {
      expect(await refused(forge(`odd-${cn.replace(/\W/g, '_')}`, cn)), cn).toBe(135);
    }
  });

  it("positive controls: TA's CA works for TA's devices (also one it signs itself), the global CA for any tenant", async () => {
    for (const [files, tenant, device] of [
      [taOwn, 'TA', 'ta-own'],
      [forge('ta-self-signed-device', 'TA/made-by-ta'), 'TA', 'made-by-ta'],
      [taGlobal, 'TA', 'ta-global'],
      [victim, 'TB', 'victim'],
    ] as const) {
      const c = await connect(files);
      const got: string[] = [];
      c.on('message', (topic) => got.push(topic));
      expect(await granted(c, `tenant/${tenant}/device/${device}/#`), device).toBe(1);
      expect(await granted(c, `certfleet/renew/${tenant}/${device}/response`), device).toBe(1);
      expect(await publishQos1(c, `tenant/${tenant}/device/${device}/telemetry`, 'own'), device).toBe(true);
      expect(await publishQos1(c, `certfleet/renew/${tenant}/${device}/request`, '{}'), device).toBe(true);
      await waitFor(() => got.includes(`tenant/${tenant}/device/${device}/telemetry`), `${device} to receive its own message`);
    }
  });

  it('a missing scope map fails closed (no certificate device gets in); restored, it works again', async () => {
    const conf = readFileSync(join(tmp, 'broker', 'mosquitto.conf'), 'utf8');
    const scopes = conf.match(/^plugin_opt_ca_scopes_file (.+)$/m)?.[1];
    expect(scopes, 'mosquitto.conf names the scope map').toBeTruthy();
    renameSync(scopes!, `${scopes}.away`);
    let offset = broker.logs().length;
    process.kill(broker.pid, 'SIGHUP');
    await broker.waitForLog(/certfleet_acl: reload: .*CA scope/, scaled(30_000), offset);
    for (const [files, tenant, device] of [
      [taOwn, 'TA', 'ta-own'],
      [victim, 'TB', 'victim'],
    ] as const) {
      expect(await refused(files), `${tenant}/${device}`).toBe(135);
    }
    renameSync(`${scopes}.away`, scopes!);
    offset = broker.logs().length;
    process.kill(broker.pid, 'SIGHUP');
    await broker.waitForLog(/certfleet_acl: reload: .*CA scope/, scaled(30_000), offset);
    const c = await connect(taOwn);
    expect(await granted(c, 'tenant/TA/device/ta-own/#')).toBe(1);
  });
});
