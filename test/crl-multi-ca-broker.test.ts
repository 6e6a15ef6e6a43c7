/**
 * Several CAs at a real Mosquitto (issue 19 item 2): the broker's cafile (BROKER_CA_PATH) and
 * crlfile (CRL_OUTPUT_PATH) kept by certfleet. Staging a second CA while a device of the first
 * reconnects continuously refuses none of its handshakes (a CA in the cafile without its CRL in
 * the crlfile would have all its certificates refused: Mosquitto 2.0.11); then devices of both
 * CAs are accepted, a revoked certificate of each is refused, and a revoked CA leaves the trust
 * set (its valid certificates refused, the first CA's still accepted). At every broker reload the
 * files are checked: no CA in the cafile without its CRL in the crlfile.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBrokerReloader, type BrokerReloader } from '../src/broker/broker-reloader.ts';
import { createCrlPublication, type CrlPublication } from '../src/composition/crl.ts';
import { caDistributionPointUrl } from '../src/crl/ca-set.ts';
import { caRecordFor, createStaticCaDirectory, type StaticCaDirectory } from '../src/pki/ca-directory.ts';
import { loadDeviceCa, type DeviceCa } from '../src/pki/device-ca.ts';
import { pemBlocks } from '../src/pki/pem.ts';
import { x509 } from '../src/pki/x509.ts';
import { silentLogger } from '../src/support/logger.ts';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { issueUnder, loadedCa, revokeSerial, type IssuedDevice } from './support/multi-ca.ts';
import { scaled } from './support/timeouts.ts';

const BASE = 'https://certfleet.example';

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let port: number;
let combinedCa: string;
let broker: RunningMosquitto;
let crl: CrlPublication;
let dir: StaticCaDirectory;
let ca1: DeviceCa;
let ca2: DeviceCa;
let cafile: string;
const violations: string[] = [];

const keyId = (ca: DeviceCa) => ca.subjectKeyId.toString('hex');
const dp = (ca: DeviceCa, id: string) => caDistributionPointUrl({ publicBaseUrl: BASE }, { id, issuerKeyId: keyId(ca) }, keyId(ca1));

/** What the broker's two files hold now (CA key ids). */
function files() {
  const cas = pemBlocks(readFileSync(cafile, 'utf8'), 'CERTIFICATE').map((der) => ([ca1, ca2].find((c) => c?.certDer.equals(der)) ? keyId([ca1, ca2].find((c) => c?.certDer.equals(der))!) : '?'));
  const crls = pemBlocks(readFileSync(env.CRL_OUTPUT_PATH, 'latin1'), 'X509 CRL').map((der) => {
    const issuer = new x509.X509Crl(new Uint8Array(der)).issuerName.getField('CN')[0];
    const ca = [ca1, ca2].find((c) => c && issuer === c.issuerLabel);
    return ca ? keyId(ca) : '?';
  });
  return { cas, crls };
}

/** One connection attempt: accepted, or the error. */
async function probe(c: IssuedDevice): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, { ...tlsOptions({ port, cafile: combinedCa, cert: c.cert, key: c.key }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10_000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

async function eventually(c: IssuedDevice, outcome: (r: string) => boolean, what: string, timeoutMs = scaled(30_000)) {
  const until = Date.now() + timeoutMs;
  let last = '';
  while (!outcome((last = await probe(c)))) {
    if (Date.now() > until) throw new Error(`${c.cert}: still "${last}" after ${timeoutMs} ms, expected ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  ({ tmp, database, env } = await brokerTestFixture('multica'));
  port = await freePort();
  const config = await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(port), '--no-kick']);
  combinedCa = config.files.combinedCa;
  cafile = config.files.deviceCaCert;
  ca1 = await loadDeviceCa(env.DEVICE_CA_CERT_PATH, env.DEVICE_CA_KEY_PATH);
  ca2 = await loadedCa('certfleet multica Device CA two');
  dir = createStaticCaDirectory([{ record: caRecordFor(ca1, { id: 'ca_one', status: 'active', crlDistributionPoint: `${BASE}/pki/crl` }), ca: ca1 }]);
  const signal = createBrokerReloader({ pidFile: config.files.pidFile, logger: silentLogger });
  const reloader: BrokerReloader = {
    configured: true,
    description: 'SIGHUP, after checking the files',
    async reload() {
      const now = files();
      for (const id of now.cas) if (!now.crls.includes(id)) violations.push(`CA ${id} in cafile without its CRL: ${JSON.stringify(now)}`);
      await signal.reload().catch(() => undefined); // before the broker runs: nothing to signal yet
    },
  };
  crl = createCrlPublication({
    config: { crlOutputPath: env.CRL_OUTPUT_PATH, crlRefreshMinutes: 60, crlValidityHours: 168, brokerPidFile: null, brokerReloadCommand: null, publicBaseUrl: BASE, brokerCaPath: cafile },
    storage: database,
    ca: null,
    cas: dir,
    legacyIssuerKeyId: keyId(ca1),
    logger: silentLogger,
    reloader,
    refreshTimer: false,
  });
  await crl.start();
  await crl.settled();
  broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
}, scaled(120_000));

afterAll(async () => {
  await crl?.stop();
  await closeBrokerTest({ broker, database, tmp });
}, 60_000);

describe('two CAs at a real Mosquitto', () => {
  it('stages a second CA with no refused handshake of the first CA’s devices; both accepted, revoked ones of each refused; a revoked CA leaves the trust set', async () => {
    const a = await issueUnder(database.driver, ca1, dp(ca1, 'ca_one'), 'acme', 'dev-a', join(tmp, 'certs'));
    expect(await probe(a)).toBe('accepted');
    expect(files()).toEqual({ cas: [keyId(ca1)], crls: [keyId(ca1)] });

    // Stage CA two while dev-a reconnects continuously: count every handshake.
    const outcomes: string[] = [];
    let staging = true;
    const loop = (async () => {
      while (staging) outcomes.push(await probe(a));
    })();
    const before = outcomes.length;
    let b: IssuedDevice;
    try {
      dir.add({ record: caRecordFor(ca2, { id: 'ca_two', status: 'staged', crlDistributionPoint: `${BASE}/pki/ca/ca_two/crl` }), ca: ca2 });
      await crl.settled();
      expect(files()).toEqual({ cas: [keyId(ca1), keyId(ca2)], crls: [keyId(ca1), keyId(ca2)] });
      b = await issueUnder(database.driver, ca2, dp(ca2, 'ca_two'), 'acme', 'dev-b', join(tmp, 'certs'));
      await eventually(b, (r) => r === 'accepted', 'accepted');
      // A few more handshakes of dev-a after the broker has both CAs.
      const seen = outcomes.length;
      while (outcomes.length < seen + 3) await new Promise((r) => setTimeout(r, 20));
    } finally {
      staging = false;
      await loop;
    }
    expect(outcomes.length).toBeGreaterThan(before + 3);
    expect(outcomes.filter((o) => o !== 'accepted')).toEqual([]);
    expect(violations).toEqual([]);

    // A revoked certificate of each CA is refused; the valid ones are accepted.
    const ra = await issueUnder(database.driver, ca1, dp(ca1, 'ca_one'), 'acme', 'dev-ra', join(tmp, 'certs'));
    const rb = await issueUnder(database.driver, ca2, dp(ca2, 'ca_two'), 'acme', 'dev-rb', join(tmp, 'certs'));
    await crl.publisher!.idle();
    expect(await probe(ra)).toBe('accepted');
    expect(await probe(rb)).toBe('accepted');
    for (const r of [ra, rb]) {
      await revokeSerial(database.driver, r.serial);
      crl.listener.revocationCommitted();
      await crl.publisher!.idle();
      await eventually(r, (o) => o === 'revoked', 'revoked');
    }
    expect(await probe(a)).toBe('accepted');
    expect(await probe(b)).toBe('accepted');

    // CA two revoked: out of the cafile (then its CRL out of the crlfile); its valid certificate is refused.
    dir.setStatus('ca_two', 'revoked');
    await crl.settled();
    expect(files()).toEqual({ cas: [keyId(ca1)], crls: [keyId(ca1)] });
    await eventually(b, (o) => o !== 'accepted', 'refused');
    expect(await probe(a)).toBe('accepted');
    expect(await probe(ra)).toBe('revoked');
    expect(violations).toEqual([]);
  }, scaled(240_000));
});
