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
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { RENDER_OPTIONS_FILE } from '../src/broker/broker-files.ts';
import { syncCrlHashLinks } from '../src/broker/crl-hash-links.ts';
import { renderCrlPlaceholder } from '../src/broker/crl-placeholder.ts';
import { run } from './support/openssl.ts';
import { connectOnce, credentialFrom } from './support/rollover.ts';
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

/**
 * Two CAs with the same subject name (a rollover that keeps the name: one subject hash for both)
 * and a third with another name, their CRLs concatenated in the one CRL file as certfleet writes
 * it, one `<hash>.r0` link per distinct hash: OpenSSL's by_dir loads every CRL of the file it
 * opens, so each CA's devices are checked against their own CA's CRL.
 */
describe('capath: CAs sharing a subject hash, one CRL file, real broker (openssl-made CAs)', () => {
  let dir2: string;
  let broker2: RunningMosquitto;
  let port2: number;
  let serverCa: string;
  const f = (name: string) => join(dir2, name);
  const mustRun = (args: string[]) => {
    const r = run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.out}`);
    return r.out;
  };
  const makeCa = (name: string, cn: string) =>
    mustRun(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '30', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectKeyIdentifier=hash']);
  function makeLeaf(name: string, ca: string, usage: string) {
    mustRun(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    writeFileSync(f(`${name}.ext`), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=DNS:localhost\nauthorityKeyIdentifier=keyid\n`);
    mustRun(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '30', '-extfile', f(`${name}.ext`), '-out', f(`${name}.crt`)]);
  }
  function makeCrl(ca: string, revoke: string[] = []) {
    writeFileSync(f(`${ca}.index`), '');
    writeFileSync(f(`${ca}.crlnum`), '01\n');
    writeFileSync(f(`${ca}.cnf`), `[ca]\ndefault_ca=d\n[d]\ndatabase=${f(`${ca}.index`)}\ncrlnumber=${f(`${ca}.crlnum`)}\ndefault_md=sha256\ndefault_crl_days=30\ncrl_extensions=ext\n[ext]\nauthorityKeyIdentifier=keyid\n`);
    for (const leaf of revoke) mustRun(['ca', '-config', f(`${ca}.cnf`), '-keyfile', f(`${ca}.key`), '-cert', f(`${ca}.crt`), '-revoke', f(`${leaf}.crt`)]);
    mustRun(['ca', '-gencrl', '-config', f(`${ca}.cnf`), '-keyfile', f(`${ca}.key`), '-cert', f(`${ca}.crt`), '-out', f(`${ca}.crl`)]);
  }
  const text = (name: string) => readFileSync(f(name), 'utf8');
  const outcome = (who: string) => connectOnce({ port: port2, caPem: serverCa, timeoutMs: scaled(20_000) }, credentialFrom(text(`${who}.crt`), text(`${who}.key`)));
  const put = (file: string, data: string) => {
    writeFileSync(`${file}.new`, data, { mode: 0o644 });
    chmodSync(`${file}.new`, 0o644);
    renameSync(`${file}.new`, file);
  };

  beforeAll(async () => {
    dir2 = mkdtempSync(join(tmpdir(), 'certfleet-capath-collide-'));
    chmodSync(dir2, 0o755);
    makeCa('server-ca', 'capath server CA');
    makeLeaf('server', 'server-ca', 'serverAuth');
    makeCa('old', 'Same Name Device CA');
    makeCa('new', 'Same Name Device CA');
    makeCa('other', 'Other Device CA');
    for (const [leaf, ca] of [['oldA', 'old'], ['oldB', 'old'], ['newA', 'new'], ['newB', 'new'], ['otherA', 'other']]) makeLeaf(leaf!, ca!, 'clientAuth');
    makeCrl('old', ['oldB']);
    makeCrl('new');
    makeCrl('other');
    serverCa = text('server-ca.crt');
    mkdirSync(f('crl'), { mode: 0o755 });
    put(f('crl/device-crl.pem'), text('old.crl') + text('new.crl') + text('other.crl'));
    const hashes = ['old', 'new', 'other'].map((ca) => subjectHash(new X509Certificate(text(`${ca}.crt`)).raw));
    expect(hashes[0]).toBe(hashes[1]);
    expect(hashes[2]).not.toBe(hashes[0]);
    await syncCrlHashLinks(f('crl/device-crl.pem.hash'), f('crl/device-crl.pem'), hashes);
    expect(readdirSync(f('crl/device-crl.pem.hash')).sort()).toEqual([...new Set(hashes)].map((h) => `${h}.r0`).sort());
    put(f('placeholder.pem'), renderCrlPlaceholder());
    put(f('cas.pem'), text('old.crt') + text('new.crt') + text('other.crt'));
    for (const name of ['server.crt', 'server.key']) chmodSync(f(name), 0o644);
    mkdirSync(f('run'));
    chmodSync(f('run'), 0o777);
    port2 = await freePort();
    writeFileSync(
      f('mosquitto.conf'),
      [
        'allow_anonymous false',
        'persistence false',
        `pid_file ${f('run/mosquitto.pid')}`,
        'log_dest stderr',
        'log_type all',
        `listener ${port2} 127.0.0.1`,
        `cafile ${f('cas.pem')}`,
        `capath ${f('crl/device-crl.pem.hash')}`,
        `certfile ${f('server.crt')}`,
        `keyfile ${f('server.key')}`,
        'require_certificate true',
        'use_identity_as_username true',
        `crlfile ${f('placeholder.pem')}`,
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    writeFileSync(f(RENDER_OPTIONS_FILE), JSON.stringify({ port: port2, pidFile: f('run/mosquitto.pid') }));
    broker2 = await startMosquitto({ configDir: dir2, asWritten: true });
  }, scaled(120_000));
  afterAll(async () => {
    await broker2?.stop();
    if (dir2) rmSync(dir2, { recursive: true, force: true });
  }, scaled(60_000));

  it("each CA's devices are checked against that CA's CRL, whichever device connects first after a reload", async () => {
    for (const first of ['newA', 'oldB', 'otherA']) {
      const offset = broker2.logs().length;
      process.kill(broker2.pid, 'SIGHUP');
      await broker2.waitForLog(/Reloading config/, scaled(30_000), offset);
      expect(await outcome(first)).toBe(first === 'oldB' ? 'revoked' : 'accepted');
      expect({ oldA: await outcome('oldA'), oldB: await outcome('oldB'), newA: await outcome('newA'), newB: await outcome('newB'), otherA: await outcome('otherA') }).toEqual({
        oldA: 'accepted',
        oldB: 'revoked',
        newA: 'accepted',
        newB: 'accepted',
        otherA: 'accepted',
      });
    }
  });

  it('a revocation by the second CA of the name (new CRL file, reload) is enforced; the first CA is unaffected', async () => {
    makeCrl('new', ['newB']);
    put(f('crl/device-crl.pem'), text('old.crl') + text('new.crl') + text('other.crl'));
    expect(await outcome('newB')).toBe('accepted'); // loaded once per context: no reload, no new CRL
    const offset = broker2.logs().length;
    process.kill(broker2.pid, 'SIGHUP');
    await broker2.waitForLog(/Reloading config/, scaled(30_000), offset);
    expect({ oldA: await outcome('oldA'), oldB: await outcome('oldB'), newA: await outcome('newA'), newB: await outcome('newB'), otherA: await outcome('otherA') }).toEqual({
      oldA: 'accepted',
      oldB: 'revoked',
      newA: 'accepted',
      newB: 'revoked',
      otherA: 'accepted',
    });
  });
});
