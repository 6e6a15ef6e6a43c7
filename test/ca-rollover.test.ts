/**
 * The proof of issue 19 item 6: a fleet moves from one Device CA to the next through a real
 * Mosquitto without one valid device refused.
 *
 * Mosquitto runs the configuration `certfleet broker-config` wrote, certfleet (Postgres) keeps its
 * cafile and crlfile and reloads it (BROKER_PID_FILE, the local path). ROLLOVER_FLEET devices
 * (default 20), each with its own key and certificate under CA1, reconnect without pause during
 * the whole test (TLS handshake + MQTT CONNECT, 4 at a time, cycling through the fleet), and every
 * attempt is counted in the phase it began in:
 *
 *   1. CA1 active;
 *   2. CA2 staged (POST /api/v1/operator/cas): the broker gets CA2 and its CRL (waited for in
 *      the broker's own files and a reload logged after them, not a sleep);
 *   3. CA2 activated: the first certificate it issues is accepted at its first attempt;
 *   4. every device renews over EST (simplereenroll with a new key made on the device, then the
 *      new certificate's first use confirms the rotation and revokes the CA1 one) and reconnects
 *      with its CA2 certificate;
 *   5. CA1 retired (no live certificate left under it, so without force): once the broker's files
 *      dropped it, every CA1 certificate is refused.
 *
 * In every phase a certificate revoked then (under CA1, and from phase 3 under CA2 too) is refused
 * and stays refused, and no valid device's attempt is refused (which device, certificate and phase
 * otherwise). The counts are printed at the end.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningMosquitto } from './support/mosquitto.ts';
import {
  brokerCovers,
  certificatesIn,
  connectOnce,
  countsTable,
  credentialFrom,
  inParallel,
  readBrokerTrust,
  renewAndConfirm,
  startHandshakeLoop,
  startRolloverRig,
  waitForBrokerTrust,
  type Credential,
  type FleetDevice,
  type HandshakeLoop,
  type RefusalProbe,
  type RolloverRig,
} from './support/rollover.ts';
import type { TestService } from './support/service.ts';
import { cli } from './support/cli.ts';
import { scaled } from './support/timeouts.ts';
import { expectAllRefused, expectEveryPhaseHeld, phaseHolds, waitForCas } from './support/rollover-phases.ts';

const TENANT = 'rollover';
// 50 devices: the proof of a rollover with zero refused devices is stated for a fleet of at least 50
// reconnecting throughout (the size docs/ca-rollover-proof.md records); bench/rollover.bench.ts runs
// 200. (The broker-side test, ca-rollover-broker.test.ts, runs 20.)
const FLEET = Number(process.env.ROLLOVER_FLEET ?? 50);
const PHASES = ['1 CA1 active', '2 CA2 staged', '3 CA2 active', '4 fleet renews over EST', '5 CA1 retired'] as const;
const CAS = '/api/v1/operator/cas';

let close: (() => Promise<void>) | undefined;
let env: Record<string, string>;
let broker: RunningMosquitto;
let t: TestService;
let estUrl: string;
let combinedCa: string;
let trustFiles: { cafile: string; crlfile: string };
let port: number;
let loop: HandshakeLoop | null = null;
const devices: FleetDevice[] = [];
/** CA1 certificates revoked one per phase (issued in phase 1, while CA1 is the only CA). */
const ca1Spares: Credential[] = [];
/** Every CA1 certificate the test saw (all must be refused after retirement). */
const ca1Creds: Credential[] = [];

interface CaView {
  id: string;
  status: string;
  tenant_id: string | null;
  subject: string;
  not_after: string;
  active_certificates: number;
}
let ca1: CaView;
let ca2: CaView;
let ca1Cert: x509.X509Certificate;
let ca2Cert: x509.X509Certificate;

const api = async (method: string, url: string, body?: unknown, tenant: string | null = null) => {
  const res = await t.call(tenant, method, url, body, tenant ? 'tenant-admin' : 'operator-admin');
  return res;
};

async function listCas(): Promise<CaView[]> {
  const res = await api('GET', CAS);
  expect(res.status, `GET ${CAS}: ${res.body}`).toBe(200);
  return (res.json.cas ?? res.json) as CaView[];
}
const caOf = (json: { ca?: CaView } & CaView): CaView => json.ca ?? json;

async function caCertificate(id: string): Promise<x509.X509Certificate> {
  const res = await t.service.app.inject({ method: 'GET', url: `/pki/ca/${id}.pem` });
  expect(res.statusCode, `GET /pki/ca/${id}.pem: ${res.body}`).toBe(200);
  return new x509.X509Certificate(res.body);
}

async function register(deviceId: string) {
  const res = await api('POST', '/api/v1/customer/devices', { device_id: deviceId }, TENANT);
  expect([201, 409], res.body).toContain(res.status);
}

/** A certificate with a server-generated key for `deviceId` (spares and revocation victims). */
async function generate(deviceId: string): Promise<Credential> {
  await register(deviceId);
  const res = await api('POST', `/api/v1/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' }, TENANT);
  expect(res.status, res.body).toBe(201);
  return credentialFrom(res.json.cert_pem, res.json.private_key_pem, res.json.certificate.id);
}

async function certificateStatus(id: number): Promise<string> {
  const res = await api('GET', `/api/v1/customer/certificates/${id}`, undefined, TENANT);
  expect(res.status, res.body).toBe(200);
  return res.json.certificate.status;
}

const issuedBy = async (cred: Credential, ca: x509.X509Certificate) => {
  const cert = new x509.X509Certificate(cred.certPem);
  return cert.issuer === ca.subject && (await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }));
};

/** Revokes `cred` through the API and waits until the broker refuses it; from then on the loop probes it. */
async function revokeAndProbe(name: string, cred: Credential): Promise<RefusalProbe> {
  const res = await api('POST', `/api/v1/customer/certificates/${cred.id}/revoke`, { reason: 'keyCompromise' }, TENANT);
  expect(res.status, res.body).toBe(200);
  const probe: RefusalProbe = { name, cred, state: 'pending' };
  loop!.probes.push(probe);
  await loop!.probeRefused(probe, scaled(60_000));
  return probe;
}


const trustNow = () => readBrokerTrust(trustFiles);


describe(`CA rollover through a real Mosquitto, ${FLEET} devices reconnecting throughout`, () => {
  beforeAll(async () => {
    ({ env, broker, t, estUrl, combinedCa, trustFiles, port, close } = await startRolloverRig('rollover'));
  }, scaled(120_000));

  afterAll(async () => {
    await loop?.stop();
    if (loop) console.log(`CA rollover, ${FLEET} devices reconnecting:\n${countsTable(loop, [...PHASES])}`);
    if (process.env.SHOW_BROKER_LOGS) console.log(broker?.logs());
    await close?.();
  }, scaled(60_000));

  it(`phase ${PHASES[0]}: the fleet connects under CA1; a revoked CA1 certificate is refused`, async () => {
    ca1Cert = new x509.X509Certificate(readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8'));
    expect(await brokerCovers(trustNow(), ca1Cert)).toEqual({ inCafile: true, crl: true });

    for (let i = 0; i < FLEET; i++) {
      const id = `device-${String(i).padStart(4, '0')}`;
      const current = await generate(id);
      expect(await issuedBy(current, ca1Cert)).toBe(true);
      devices.push({ id, current, inflight: new Map() });
      ca1Creds.push(current);
    }
    for (let i = 0; i < 3; i++) ca1Spares.push(await generate(`spare-ca1-${i}`));
    ca1Creds.push(...ca1Spares);

    loop = startHandshakeLoop({ port, caPem: combinedCa, devices, concurrency: 4, initialPhase: PHASES[0], timeoutMs: scaled(30_000) });
    await revokeAndProbe('CA1 certificate revoked in phase 1', ca1Spares[0]);
    await phaseHolds(loop!);
    // certfleet imported DEVICE_CA_CERT_PATH at start as the global active CA.
    const cas = await listCas();
    expect(cas.filter((c) => c.status === 'active')).toHaveLength(1);
    ca1 = cas.find((c) => c.status === 'active')!;
    expect(ca1.tenant_id).toBeNull();
    expect(ca1.active_certificates).toBe(FLEET + ca1Spares.length - 1);
    expect(Buffer.from((await caCertificate(ca1.id)).rawData)).toEqual(Buffer.from(ca1Cert.rawData));
  }, scaled(600_000));

  it(`phase ${PHASES[1]}: the broker gets CA2 and its CRL; nothing changes for the fleet`, async () => {
    if (!loop || !ca1) throw new Error('phase 1 did not complete');
    loop.phase = PHASES[1];
    const since = broker.logs().length;
    const res = await api('POST', CAS, { key_type: 'ec-p256' });
    expect(res.status, res.body).toBe(201);
    ca2 = caOf(res.json);
    expect(ca2).toMatchObject({ status: 'staged', tenant_id: null, active_certificates: 0 });
    ca2Cert = await caCertificate(ca2.id);
    expect(ca2Cert.subject).not.toBe(ca1Cert.subject);
    // Readiness: CA2 in the broker's cafile and its CRL in the crlfile, and a reload after that.
    await waitForCas(broker, trustFiles, since, [[ca1Cert, true], [ca2Cert, true]], 'CA2 and its CRL in the broker files, then a reload');
    // Devices learn the next CA before it signs anything.
    const bundle = await t.service.app.inject({ method: 'GET', url: '/pki/cas.pem' });
    expect(bundle.statusCode).toBe(200);
    expect(certificatesIn(bundle.body).map((c) => c.subject).sort()).toEqual([ca1Cert.subject, ca2Cert.subject].sort());
    // A staged CA signs nothing: new certificates still come from CA1.
    const issued = await generate('victim-phase-2');
    expect(await issuedBy(issued, ca1Cert)).toBe(true);
    ca1Creds.push(issued);
    await revokeAndProbe('CA1 certificate revoked in phase 2', issued);
    await phaseHolds(loop!);
  }, scaled(600_000));

  it(`phase ${PHASES[2]}: CA2 signs; its first certificate is accepted at once; both CAs' revocations are refused`, async () => {
    if (!loop || !ca2) throw new Error('an earlier phase did not complete');
    loop.phase = PHASES[2];
    const res = await api('POST', `${CAS}/${ca2.id}/activate`, {});
    expect(res.status, res.body).toBe(200);
    const cas = await listCas();
    expect(cas.find((c) => c.id === ca2.id)?.status).toBe('active');
    expect(cas.find((c) => c.id === ca1.id)?.status).toBe('retiring');
    // The first certificate CA2 issues: accepted at its first attempt (the broker had CA2 already).
    const first = await generate('victim-phase-3');
    expect(await issuedBy(first, ca2Cert)).toBe(true);
    expect(await connectOnce({ port, caPem: combinedCa }, first)).toBe('accepted');
    await revokeAndProbe('CA2 certificate revoked in phase 3', first);
    // A retiring CA's revocations still reach the broker.
    await revokeAndProbe('CA1 certificate revoked in phase 3', ca1Spares[1]);
    // Retiring CA1 now is refused: live certificates remain under it.
    const early = await api('POST', `${CAS}/${ca1.id}/retire`, {});
    expect(early.status, early.body).toBe(409);
    await phaseHolds(loop!);
  }, scaled(600_000));

  let migratedPerSecond = 0;
  it(`phase ${PHASES[3]}: every device renews over EST under CA2 and reconnects with it`, async () => {
    if (!loop || !ca2) throw new Error('an earlier phase did not complete');
    loop.phase = PHASES[3];
    const started = performance.now();
    await inParallel(devices, 4, async (device) => {
      const oldId = device.current.id!;
      const { previous, next } = await renewAndConfirm(estUrl, combinedCa, loop!, device);
      expect(await issuedBy(next, ca2Cert), `${device.id} renewed under CA2`).toBe(true);
      // The new certificate's first use (EST) confirmed the rotation: the CA1 certificate is revoked.
      expect(await certificateStatus(oldId), `${device.id}'s CA1 certificate revoked on confirmation`).toBe('REVOKED');
      loop!.probes.push({ name: `${device.id}'s superseded CA1 certificate`, cred: previous, state: 'pending' });
    });
    migratedPerSecond = FLEET / ((performance.now() - started) / 1000);
    console.log(`${FLEET} devices migrated to CA2 over EST in ${((performance.now() - started) / 1000).toFixed(1)} s: ${migratedPerSecond.toFixed(1)} devices/s`);
    const view = await api('GET', `${CAS}/${ca1.id}`);
    expect(view.status, view.body).toBe(200);
    expect(caOf(view.json).active_certificates).toBe(1); // the last spare, revoked next
    await revokeAndProbe('CA1 certificate revoked in phase 4', ca1Spares[2]);
    expect(caOf((await api('GET', `${CAS}/${ca1.id}`)).json).active_certificates).toBe(0);
    await revokeAndProbe('CA2 certificate revoked in phase 4', await generate('victim-phase-4'));
    for (const probe of loop!.probes) await loop!.probeRefused(probe, scaled(60_000));
    await phaseHolds(loop!);
  }, scaled(900_000));

  it(`phase ${PHASES[4]}: CA1 retires without force; once the broker dropped it, every CA1 certificate is refused`, async () => {
    if (!loop || !ca2) throw new Error('an earlier phase did not complete');
    loop.phase = PHASES[4];
    const since = broker.logs().length;
    const res = await api('POST', `${CAS}/${ca1.id}/retire`, {});
    expect(res.status, res.body).toBe(200);
    expect(caOf(res.json).status).toBe('retired');
    await waitForCas(broker, trustFiles, since, [[ca1Cert, false], [ca2Cert, true]], 'CA1 out of the broker files (CA2 and its CRL still in), then a reload');
    const bundle = await t.service.app.inject({ method: 'GET', url: '/pki/cas.pem' });
    expect(certificatesIn(bundle.body).map((c) => c.subject)).toEqual([ca2Cert.subject]);
    const outcomes = await expectAllRefused({ port, caPem: combinedCa }, ca1Creds, 'CA1 certificate after retirement');
    console.log(`after retirement, ${ca1Creds.length} CA1 certificates: ${JSON.stringify(outcomes)}`);
    await revokeAndProbe('CA2 certificate revoked in phase 5', await generate('victim-phase-5'));
    await phaseHolds(loop!);
  }, scaled(600_000));

  it('no valid device was refused in any phase, and every phase saw the whole fleet', async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    await expectEveryPhaseHeld(loop, PHASES, FLEET);
  });
});

/**
 * A compromised CA (the runbook): CA1 is revoked with cACompromise while CA2 is staged. Issuance
 * under CA1 stops at once and the broker drops CA1 (its devices are refused: wanted, the key is
 * no longer trusted); CA2 is activated and `rotate-expiring --issuer CA1` gives every device a CA2
 * certificate, which the broker accepts at once.
 */
describe('a compromised CA: ca revoke --reason cACompromise, then the runbook moves the fleet', () => {
  const SMALL_FLEET = 10;
  let rig: RolloverRig;
  let baseUrl: string;
  const fleet: FleetDevice[] = [];
  const run = async (args: string[], role: 'operator-admin' | 'tenant-admin' = 'operator-admin') =>
    cli([...args, '--url', baseUrl, '--token', await rig.t.token(role === 'operator-admin' ? null : TENANT, role)]);

  beforeAll(async () => {
    rig = await startRolloverRig('compromise');
    baseUrl = await rig.t.service.app.listen({ port: 0, host: '127.0.0.1' });
  }, scaled(120_000));
  afterAll(async () => {
    await rig?.close();
  }, scaled(60_000));

  it('issuance stops at once, the broker drops CA1, and rotate-expiring --issuer CA1 moves every device to CA2', async () => {
    const { t } = rig;
    const call = (method: string, url: string, body?: unknown, tenant: string | null = null) => t.call(tenant, method, url, body, tenant ? 'tenant-admin' : 'operator-admin');
    const caPem = rig.combinedCa;
    const ca1Pem = readFileSync(rig.env.DEVICE_CA_CERT_PATH, 'utf8');
    const ca1 = new x509.X509Certificate(ca1Pem);
    for (let i = 0; i < SMALL_FLEET; i++) {
      const id = `c-device-${i}`;
      expect((await call('POST', '/api/v1/customer/devices', { device_id: id }, TENANT)).status).toBe(201);
      const res = await call('POST', `/api/v1/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' }, TENANT);
      expect(res.status, res.body).toBe(201);
      fleet.push({ id, current: credentialFrom(res.json.cert_pem, res.json.private_key_pem, res.json.certificate.id), inflight: new Map() });
    }
    for (const d of fleet) expect(await connectOnce({ port: rig.port, caPem }, d.current), d.id).toBe('accepted');

    const list = await run(['ca', 'list', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const ca1Id = (JSON.parse(list.stdout) as CaView[]).find((c) => c.status === 'active')!.id;
    let since = rig.broker.logs().length;
    const created = await run(['ca', 'create', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const ca2View = JSON.parse(created.stdout) as CaView;
    expect(ca2View.status).toBe('staged');
    const ca2 = new x509.X509Certificate((await t.service.app.inject({ method: 'GET', url: `/pki/ca/${ca2View.id}.pem` })).body);
    await waitForBrokerTrust(rig.broker, rig.trustFiles, since, async (trust) => (await brokerCovers(trust, ca2)).crl && (await brokerCovers(trust, ca2)).inCafile, 'CA2 staged in the broker files', scaled(60_000));

    // The compromise.
    since = rig.broker.logs().length;
    const revoked = await run(['ca', 'revoke', ca1Id, '--reason', 'cACompromise', '--json']);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id: ca1Id, status: 'revoked' });
    // Issuance under CA1 stops at once: CA2 is only staged, so nothing signs.
    await call('POST', '/api/v1/customer/devices', { device_id: 'c-after-compromise' }, TENANT);
    const refusedIssue = await call('POST', '/api/v1/customer/devices/c-after-compromise/certificates/generate', { key_type: 'ec-p256' }, TENANT);
    expect(refusedIssue.status, refusedIssue.body).toBeGreaterThanOrEqual(400);
    expect(refusedIssue.status, refusedIssue.body).toBeLessThan(600);
    expect(refusedIssue.json?.cert_pem).toBeUndefined();
    // The broker stops trusting CA1 at once: its devices are refused (the key may be in other hands).
    await waitForBrokerTrust(
      rig.broker,
      rig.trustFiles,
      since,
      async (trust) => !(await brokerCovers(trust, ca1)).inCafile && (await brokerCovers(trust, ca2)).inCafile,
      'CA1 out of the broker cafile after its revocation',
      scaled(60_000),
    );
    // The files are final, but the reload seen may be an earlier one (the revocation's CRL was
    // written and signalled just before the cafile): wait for the broker to refuse a CA1 device,
    // then require every one refused. A certfleet that never signals after the cafile write fails here.
    const deadline = Date.now() + scaled(30_000);
    while ((await connectOnce({ port: rig.port, caPem }, fleet[0]!.current)) === 'accepted') {
      expect(Date.now(), 'the broker still accepts a CA1 device after its cafile lost CA1').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const d of fleet) expect(await connectOnce({ port: rig.port, caPem }, d.current), d.id).not.toBe('accepted');

    // The runbook: activate CA2, rotate every certificate of CA1.
    const activated = await run(['ca', 'activate', ca2View.id, '--json']);
    expect(activated.code, activated.stderr).toBe(0);
    const out = join(rig.tmp, 'rotated');
    const rotated = await run(['rotate-expiring', '--issuer', ca1Id, '--out', out, '--json'], 'tenant-admin');
    expect(rotated.code, `${rotated.stdout}\n${rotated.stderr}`).toBe(0);
    for (const d of fleet) {
      const next = credentialFrom(readFileSync(join(out, `${d.id}.crt`), 'utf8'), readFileSync(join(out, `${d.id}.key`), 'utf8'));
      expect(next.issuer).toBe(ca2.subject);
      expect(await connectOnce({ port: rig.port, caPem }, next), d.id).toBe('accepted');
    }
  }, scaled(600_000));
});
