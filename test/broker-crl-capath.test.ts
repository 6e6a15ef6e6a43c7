/**
 * The device listener's CRL hash folder layout (issue 22, src/broker/crl-hash-links.ts) at the
 * installed Mosquitto, as `certfleet broker-config` writes it by default and certfleet keeps it:
 * `crlfile` a placeholder of no CA, `capath` `<CRL_OUTPUT_PATH>.hash/` with a `<CA hash>.r0` link
 * to CRL_OUTPUT_PATH, the CRL loaded lazily at the first handshake after each reload.
 *
 * Guards:
 * - a certificate revoked AFTER the CRL was loaded by a handshake is refused after the reload:
 *   OpenSSL's hashed-directory lookup never re-reads a `.r0` it loaded, so this holds only because
 *   Mosquitto builds a new TLS context at every reload (it does for a listener with `crlfile` and
 *   `require_certificate`). A Mosquitto that stopped doing so fails here.
 * - fail closed: no `.r0`, or a `.r0` that is not a CRL → every device refused (a bad `crlfile`
 *   fails OPEN in Mosquitto 2.0); certfleet puts the link back before its next reload.
 */
import { existsSync, lstatSync, readFileSync, readlinkSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { subjectHash } from '../src/pki/subject-hash.ts';
import { createLogger } from '../src/support/logger.ts';
import { brokerConfigHere, brokerTestFixture, closeBrokerTest } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startTestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const TENANT = 'acme';
interface Files {
  port: number;
  cafile: string;
  cert: string;
  key: string;
}

let tmp: string;
let database: TestDatabase;
let broker: RunningMosquitto;
let service: Awaited<ReturnType<typeof startTestService>>;
let env: Record<string, string>;
let hashDir: string;
let link: string;
const certs: { id: number; files: Files }[] = [];

async function connect(files: Files): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${files.port}`, { ...tlsOptions(files), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: scaled(20_000) }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    const message = (error as Error).message;
    return /certificate revoked/.test(message) ? 'revoked' : message;
  }
}

/** Connects until the outcome is `want` (or the time is up); the last outcome. */
async function until(files: Files, want: (outcome: string) => boolean, ms = scaled(30_000)): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const outcome = await connect(files);
    if (want(outcome) || Date.now() > end) return outcome;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGHUP, and the broker's log line that it reloaded. */
async function reload() {
  const offset = broker.logs().length;
  process.kill(broker.pid, 'SIGHUP');
  await broker.waitForLog(/Reloading config/, scaled(30_000), offset);
}

beforeAll(async () => {
  const fixture = await brokerTestFixture('capath');
  ({ tmp, database } = fixture);
  const port = await freePort();
  const config = await brokerConfigHere(fixture.env, join(tmp, 'broker'), ['--port', String(port), '--no-kick']);
  env = { ...fixture.env, ...config.env };
  hashDir = `${env.CRL_OUTPUT_PATH}.hash`;
  broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
  service = await startTestService(database, { dataDir: join(tmp, 'data'), env, overrides: { logger: createLogger({ level: 'warn', destination: { write: () => undefined } }) } });
  expect((await service.call(TENANT, 'POST', '/customer/devices', { device_id: 'CAPATH-1' })).status).toBe(201);
  for (let i = 0; i < 4; i++) {
    const r = await service.call(TENANT, 'POST', '/customer/devices/CAPATH-1/certificates/generate', { key_type: 'ec-p256' });
    expect(r.status).toBe(201);
    const cert = join(tmp, 'certs', `${i}.crt`);
    const key = join(tmp, 'certs', `${i}.key`);
    writeFileSync(cert, r.json.cert_pem);
    writeFileSync(key, r.json.private_key_pem, { mode: 0o600 });
    certs.push({ id: r.json.certificate.id, files: { port: broker.port, cafile: config.files.combinedCa, cert, key } });
  }
  const caPem = readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8');
  link = join(hashDir, `${subjectHash(new X509Certificate(caPem).raw)}.r0`);
}, scaled(180_000));

afterAll(async () => {
  await closeBrokerTest({ service, broker, database, tmp });
});

describe('Mosquitto CRL hash folder (capath) layout, real broker', () => {
  it('broker-config writes the placeholder crlfile and the capath with the CA link to CRL_OUTPUT_PATH', () => {
    const conf = readFileSync(broker.configFile, 'utf8');
    expect(conf).toContain(`capath ${hashDir}`);
    const crlfile = /^crlfile (.+)$/m.exec(conf)?.[1];
    expect(crlfile).toBe(join(tmp, 'broker', 'crl-placeholder.pem'));
    expect(readFileSync(crlfile!, 'latin1')).toContain('-----BEGIN X509 CRL-----');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe('../device-crl.pem');
  });

  it('a certificate revoked after the CRL was loaded by a handshake is refused after the reload (the TLS context is rebuilt)', async () => {
    const [a, b] = certs;
    // The first handshake after the broker's start loads the CRL from the hash folder, without b.
    expect(await connect(a!.files)).toBe('accepted');
    expect(await connect(b!.files)).toBe('accepted');
    // One more reload and handshake with the CRL loaded, then the revocation.
    await reload();
    expect(await connect(a!.files)).toBe('accepted');
    // Loaded once per context: the link removed without a reload changes nothing (the lookup does not
    // re-read the folder for a CA whose CRL it has), so only a new context can see a new CRL.
    unlinkSync(link);
    expect(await connect(a!.files)).toBe('accepted');
    symlinkSync('../device-crl.pem', link);
    expect((await service.call(TENANT, 'POST', `/customer/certificates/${b!.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    expect(await until(b!.files, (o) => o === 'revoked')).toBe('revoked');
    expect(await connect(a!.files)).toBe('accepted');
  }, scaled(120_000));

  it('no .r0, or a .r0 that is not a CRL: every device refused (fail closed); certfleet puts the link back before its next reload', async () => {
    const [a, , c, d] = certs;
    expect(await connect(a!.files)).toBe('accepted');
    // The link gone: the next reload's context finds no CRL for the CA.
    unlinkSync(link);
    await reload();
    expect(await connect(a!.files)).not.toBe('accepted');
    // A .r0 that is not a CRL.
    writeFileSync(`${link}.tmp`, 'not a CRL\n', { mode: 0o644 });
    renameSync(`${link}.tmp`, link);
    await reload();
    expect(await connect(a!.files)).not.toBe('accepted');
    // certfleet's next publication (a revocation) makes the link again before it reloads the broker.
    expect((await service.call(TENANT, 'POST', `/customer/certificates/${c!.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    expect(await until(a!.files, (o) => o === 'accepted')).toBe('accepted');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(await until(c!.files, (o) => o === 'revoked')).toBe('revoked');
    expect(await connect(d!.files)).toBe('accepted');
    // The CRL file itself is certfleet's, verified before it is renamed into place: never a bad one.
    expect(existsSync(env.CRL_OUTPUT_PATH)).toBe(true);
    expect(readFileSync(env.CRL_OUTPUT_PATH, 'latin1')).toMatch(/^-----BEGIN X509 CRL-----/);
  }, scaled(120_000));
});
