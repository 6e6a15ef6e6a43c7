/**
 * The broker half of the CA rollover proof (issue 19 item 6), on the CA publication alone: the CA
 * set is a static CaDirectory whose statuses the test changes (what `ca create/activate/retire`
 * do to it), certfleet's CRL publication (one CRL per CA, the broker's crlfile and cafile in
 * order, SIGHUP through BROKER_PID_FILE) keeps a real Mosquitto running the configuration
 * `certfleet broker-config` wrote, and ROLLOVER_FLEET devices (default 20), each with its own key
 * and certificate under CA1, reconnect without pause (TLS handshake + MQTT CONNECT, 4 at a time)
 * through: 1 CA1 active; 2 CA2 staged (waited for in the broker's files and a reload logged after
 * them); 3 CA2 active, its first certificate accepted at its first attempt; 4 every device moves
 * to a CA2 certificate and its CA1 certificate is revoked (what a confirmed renewal does); 5 CA1
 * retired: once the broker's files dropped it, every CA1 certificate is refused. In every phase a
 * certificate revoked then (CA1, and from phase 3 CA2) is refused and stays refused, and no valid
 * device's attempt is refused. test/ca-rollover.test.ts runs the same rollover through the API,
 * EST renewals and the service.
 */
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCrlPublication, type CrlPublication } from '../src/composition/crl.ts';
import { caRecordFor, createStaticCaDirectory, type StaticCaDirectory } from '../src/pki/ca-directory.ts';
import { deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { silentLogger } from '../src/support/logger.ts';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { issueUnder, loadedCa, revokeSerial } from './support/multi-ca.ts';
import {
  brokerCovers,
  brokerTrustFiles,
  connectOnce,
  countsTable,
  credentialFrom,
  inParallel,
  readBrokerTrust,
  startHandshakeLoop,
  type Credential,
  type FleetDevice,
  type HandshakeLoop,
  type RefusalProbe,
} from './support/rollover.ts';
import { scaled } from './support/timeouts.ts';
import { expectAllRefused, expectEveryPhaseHeld, phaseHolds, waitForCas } from './support/rollover-phases.ts';

const TENANT = 'rollover';
// 20 devices: enough that a phase holds only once the whole fleet reconnected in it, while the loop's
// 4 handshakes at a time run through every reload whatever the fleet; ROLLOVER_FLEET=50 is the size
// docs/ca-rollover-proof.md records, bench/rollover.bench.ts runs 200.
const FLEET = Number(process.env.ROLLOVER_FLEET ?? 20);
const BASE = 'https://certfleet.example';
const PHASES = ['1 CA1 active', '2 CA2 staged', '3 CA2 active', '4 fleet moves to CA2', '5 CA1 retired'] as const;

describe(`the broker side of a CA rollover: real Mosquitto, ${FLEET} devices reconnecting throughout`, () => {
  let tmp: string;
  let database: TestDatabase;
  let broker: RunningMosquitto;
  let crl: CrlPublication;
  let dir: StaticCaDirectory;
  let ca1: DeviceCa;
  let ca2: DeviceCa;
  let ca1Cert: x509.X509Certificate;
  let ca2Cert: x509.X509Certificate;
  let port: number;
  let combinedCa: string;
  let trustFiles: { cafile: string; crlfile: string; capath?: string };
  let loop: HandshakeLoop | null = null;
  const devices: FleetDevice[] = [];
  const serials = new Map<Credential, string>();
  const ca1Creds: Credential[] = [];
  const spares: Credential[] = [];

  async function issue(ca: DeviceCa, id: string, deviceId: string): Promise<Credential> {
    const issued = await issueUnder(database.driver, ca, `${BASE}/pki/ca/${id}/crl`, TENANT, deviceId, join(tmp, 'certs'));
    const cred = credentialFrom(issued.pem, readFileSync(issued.key, 'utf8'));
    serials.set(cred, issued.serial);
    return cred;
  }

  /** Revokes as the revoke use case commits it, then waits until the broker refuses the certificate. */
  async function revokeAndProbe(name: string, cred: Credential): Promise<void> {
    await revokeSerial(database.driver, serials.get(cred)!);
    crl.listener.revocationCommitted();
    const probe: RefusalProbe = { name, cred, state: 'pending' };
    loop!.probes.push(probe);
    await loop!.probeRefused(probe, scaled(60_000));
  }


  beforeAll(async () => {
    let env: Record<string, string>;
    ({ tmp, database, env } = await brokerTestFixture('rollover-broker'));
    ca1 = await deviceCaFromPem(readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8'), readFileSync(env.DEVICE_CA_KEY_PATH, 'utf8'));
    ca2 = await loadedCa('certfleet rollover-broker Device CA 2');
    ca1Cert = new x509.X509Certificate(ca1.certPem);
    ca2Cert = new x509.X509Certificate(ca2.certPem);
    port = await freePort();
    const config = await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(port)]);
    combinedCa = readFileSync(config.files.combinedCa, 'utf8');
    trustFiles = brokerTrustFiles(config.files.config);
    broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
    dir = createStaticCaDirectory([{ record: caRecordFor(ca1, { id: 'ca_one', status: 'active' }), ca: ca1 }]);
    crl = createCrlPublication({
      config: {
        crlOutputPath: trustFiles.crlfile,
        brokerCaPath: trustFiles.cafile,
        brokerPidFile: config.env.BROKER_PID_FILE,
        brokerReloadCommand: null,
        crlRefreshMinutes: 60,
        crlValidityHours: 168,
        publicBaseUrl: BASE,
      },
      storage: database,
      ca: null,
      cas: dir,
      legacyIssuerKeyId: ca1.subjectKeyId.toString('hex'),
      logger: silentLogger,
      refreshTimer: false,
    });
    await crl.start();
    await crl.settled();
  }, scaled(120_000));

  afterAll(async () => {
    await loop?.stop();
    if (loop) console.log(`CA rollover (broker side), ${FLEET} devices reconnecting:\n${countsTable(loop, [...PHASES])}`);
    if (process.env.SHOW_BROKER_LOGS) console.log(broker?.logs());
    await crl?.stop();
    await closeBrokerTest({ broker, database, tmp });
  }, scaled(60_000));

  it(`phase ${PHASES[0]}: the fleet connects under CA1; a revoked CA1 certificate is refused`, async () => {
    expect(await brokerCovers(readBrokerTrust(trustFiles), ca1Cert)).toEqual({ inCafile: true, crl: true });
    for (let i = 0; i < FLEET; i++) {
      const id = `device-${String(i).padStart(4, '0')}`;
      const current = await issue(ca1, 'ca_one', id);
      devices.push({ id, current, inflight: new Map() });
      ca1Creds.push(current);
    }
    for (let i = 0; i < 3; i++) spares.push(await issue(ca1, 'ca_one', `spare-${i}`));
    ca1Creds.push(...spares);
    loop = startHandshakeLoop({ port, caPem: combinedCa, devices, concurrency: 4, initialPhase: PHASES[0], timeoutMs: scaled(30_000) });
    await revokeAndProbe('CA1 certificate revoked in phase 1', spares[0]);
    await phaseHolds(loop!);
  }, scaled(600_000));

  it(`phase ${PHASES[1]}: the broker gets CA2 and its CRL (in that order); nothing changes for the fleet`, async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    loop.phase = PHASES[1];
    const since = broker.logs().length;
    dir.add({ record: caRecordFor(ca2, { id: 'ca_two', status: 'staged' }), ca: ca2 });
    await waitForCas(broker, trustFiles, since, [[ca1Cert, true], [ca2Cert, true]], 'CA2 and its CRL in the broker files, then a reload');
    await revokeAndProbe('CA1 certificate revoked in phase 2', spares[1]);
    await phaseHolds(loop!);
  }, scaled(600_000));

  it(`phase ${PHASES[2]}: CA2's first certificate is accepted at its first attempt; both CAs' revocations are refused`, async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    loop.phase = PHASES[2];
    dir.setStatus('ca_two', 'active');
    dir.setStatus('ca_one', 'retiring');
    await crl.settled();
    const first = await issue(ca2, 'ca_two', 'victim-phase-3');
    expect(await connectOnce({ port, caPem: combinedCa }, first)).toBe('accepted');
    await revokeAndProbe('CA2 certificate revoked in phase 3', first);
    await revokeAndProbe('CA1 certificate revoked in phase 3 (CA1 retiring)', spares[2]);
    await phaseHolds(loop!);
  }, scaled(600_000));

  it(`phase ${PHASES[3]}: every device moves to a CA2 certificate; its CA1 certificate is revoked`, async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    loop.phase = PHASES[3];
    const started = performance.now();
    await inParallel(devices, 4, async (device) => {
      const next = await issue(ca2, 'ca_two', device.id);
      const previous = await loop!.switchTo(device, next);
      await revokeSerial(database.driver, serials.get(previous)!);
      crl.listener.revocationCommitted();
      loop!.probes.push({ name: `${device.id}'s superseded CA1 certificate`, cred: previous, state: 'pending' });
    });
    console.log(`${FLEET} devices moved to CA2 in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    for (const probe of loop.probes) await loop.probeRefused(probe, scaled(60_000));
    await revokeAndProbe('CA2 certificate revoked in phase 4', await issue(ca2, 'ca_two', 'victim-phase-4'));
    await phaseHolds(loop!);
  }, scaled(900_000));

  it(`phase ${PHASES[4]}: once the broker's files dropped CA1, every CA1 certificate is refused`, async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    loop.phase = PHASES[4];
    const since = broker.logs().length;
    dir.setStatus('ca_one', 'retired');
    await waitForCas(broker, trustFiles, since, [[ca1Cert, false], [ca2Cert, true]], 'CA1 out of the broker files (CA2 and its CRL still in), then a reload');
    const outcomes = await expectAllRefused({ port, caPem: combinedCa }, ca1Creds, 'CA1 certificate after retirement');
    console.log(`after retirement, ${ca1Creds.length} CA1 certificates: ${JSON.stringify(outcomes)}`);
    await revokeAndProbe('CA2 certificate revoked in phase 5', await issue(ca2, 'ca_two', 'victim-phase-5'));
    await phaseHolds(loop!);
  }, scaled(600_000));

  it('no valid device was refused in any phase, and every phase saw the whole fleet', async () => {
    if (!loop) throw new Error('phase 1 did not start the fleet');
    await expectEveryPhaseHeld(loop, PHASES, FLEET);
  });
});
