/**
 * CRL publication end to end, on PGlite and real Postgres (what is not about the database on
 * PGlite only, below): revocations through the API, the stored CRL served over HTTP, the
 * broker's file written atomically, the broker reloaded only after verification. Every CRL is
 * checked by OpenSSL, GnuTLS certtool and Python cryptography, and `openssl verify -crl_check`
 * is asked about every certificate.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCrlPipeline, createPublishCrl, type CrlAuthority } from '../src/crl/publish-crl.ts';
import type { Storage, StoredCrlInfo } from '../src/app/storage-ports.ts';
import { crlAuthorityFor } from '../src/crl/publish-crl.ts';
import { DAY_MS, createManualClock, type Clock } from '../src/domain/clock.ts';
import { crlDerToPem, crlPemToDer, CrlVerificationError, verifyCrl } from '../src/crl/verify-crl.ts';
import { buildCrl } from '../src/crl/build-crl.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { readCrl, readCrlInfo } from '../src/storage/repos/crl-repo.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { createDatabase } from '../src/storage/database.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createBrokerReloader, type BrokerReloader } from '../src/broker/broker-reloader.ts';
import { createCrlFileSync, nodeCrlFs, type CrlFs } from '../src/crl/crl-file-sync.ts';
import { createCrlPublisher, type CrlPublisher } from '../src/crl/crl-publisher.ts';
import { createTestDatabase, DRIVERS, oneDriver, type TestDatabase } from './support/databases.ts';
import { insertRevokedCertificates } from './support/bulk-revoked.ts';
import { opensslVerify } from './support/openssl.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';
import { silentLogger } from '../src/support/logger.ts';

/** Like support/openssl's run, with room for the text of a 20k-entry CRL. */
function run(cmd: string, args: string[], input?: string) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const quiet = silentLogger;
/** Revoked rows of the bulk publication test. */
const BULK = 4_000;

// ---------------------------------------------------------------------------------------------
// Real tools
// ---------------------------------------------------------------------------------------------

/**
 * Python `cryptography` reads every CRL this file checks. One Python process per file answers
 * one request per line (the CRL's and the CA's paths as a JSON array; the verdict, or the
 * traceback, as one JSON line): starting Python with `cryptography` costs about 0.6 s of CPU, and
 * this file reads some 40 CRLs with it. Each CRL is still parsed, its signature checked and its
 * entries read by Python, exactly as by a `python3 -c` per CRL.
 */
const PY_CHECK = `
import json, sys, traceback
from cryptography import x509

def check(crl_path, ca_path):
    crl = x509.load_pem_x509_crl(open(crl_path, 'rb').read())
    ca = x509.load_pem_x509_certificate(open(ca_path, 'rb').read())
    entries = {}
    for r in crl:
        try:
            reason = r.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            reason = None
        entries[format(r.serial_number, 'x')] = reason
    return {
        'valid': crl.is_signature_valid(ca.public_key()),
        'number': crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
        'count': len(crl),
        'entries': entries if len(entries) <= 100 else None,
    }

while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        answer = check(*json.loads(line))
    except Exception:
        answer = {'error': traceback.format_exc()}
    sys.stdout.write(json.dumps(answer) + '\\n')
    sys.stdout.flush()
`;

let python: string | null | undefined;
/** python3 with `cryptography` (here: python3; on CI perhaps /usr/bin/python3 with python3-cryptography). */
function pythonWithCryptography(): string {
  if (python === undefined) {
    python = ['python3', '/usr/bin/python3'].find((bin) => spawnSync(bin, ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0) ?? null;
  }
  if (!python) throw new Error('no python3 with the cryptography package (install python3-cryptography)');
  return python;
}

interface PythonCrlReader {
  read(crlPath: string, caPath: string): Promise<string>;
  close(): Promise<void>;
}

/** The file's Python (PY_CHECK), started at its first use; answers arrive in the order asked. */
function startPythonCrlReader(): PythonCrlReader {
  const child = spawn(pythonWithCryptography(), ['-c', PY_CHECK], { stdio: ['pipe', 'pipe', 'pipe'] });
  const waiting: { resolve: (line: string) => void; reject: (error: Error) => void }[] = [];
  let out = '';
  let err = '';
  let exitCode: number | null | undefined;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    out += d;
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      waiting.shift()?.resolve(line);
    }
  });
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<void>((resolve) =>
    child.once('close', (code) => {
      exitCode = code;
      for (const w of waiting.splice(0)) w.reject(new Error(`python exited (${code}) before answering: ${err}`));
      resolve();
    }),
  );
  return {
    read: (crlPath, caPath) =>
      new Promise((resolve, reject) => {
        if (exitCode !== undefined) return reject(new Error(`python exited (${exitCode}): ${err}`));
        waiting.push({ resolve, reject });
        child.stdin.write(`${JSON.stringify([crlPath, caPath])}\n`);
      }),
    async close() {
      child.stdin.end();
      await exited;
    },
  };
}

let pythonReader: PythonCrlReader | undefined;
afterAll(async () => {
  await pythonReader?.close();
  pythonReader = undefined;
});

interface ToolVerdicts {
  number: bigint;
  count: number;
  entries: Record<string, string | null> | null;
}

/**
 * openssl crl -verify, certtool --verify-crl and Python cryptography must all accept the CRL;
 * returns what Python read. `certtool: false` leaves GnuTLS out: it reads entry extensions in
 * quadratic time (20k entries with a reason: 8 s of CPU idle, 30 s on a busy machine).
 */
async function checkWithTools(caPem: string, crlPem: string, { certtool = true } = {}): Promise<ToolVerdicts> {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-crl-check-'));
  const caPath = join(dir, 'ca.pem');
  const crlPath = join(dir, 'crl.pem');
  writeFileSync(caPath, caPem);
  writeFileSync(crlPath, crlPem);
  const o = run('openssl', ['crl', '-in', crlPath, '-CAfile', caPath, '-noout']);
  expect(o.out).toContain('verify OK');
  expect(o.code).toBe(0);
  if (certtool) {
    const g = run('certtool', ['--verify-crl', '--load-ca-certificate', caPath, '--infile', crlPath]);
    expect(g.out).toMatch(/Verified/);
    expect(g.code).toBe(0);
  }
  pythonReader ??= startPythonCrlReader();
  const verdict = JSON.parse(await pythonReader.read(crlPath, caPath)) as { error?: string; valid: boolean; number: number; count: number; entries: Record<string, string | null> | null };
  expect(verdict.error, verdict.error).toBeUndefined();
  expect(verdict.valid).toBe(true);
  return { number: BigInt(verdict.number), count: verdict.count, entries: verdict.entries };
}

// ---------------------------------------------------------------------------------------------

describe.each(DRIVERS)('CRL publication on %s', (kind) => {
  // The tests whose subject is not the database (HTTP caching, the publisher's coalescing, the
  // file sync's checks, the reloader's retries) run on PGlite only, like the driver-agnostic
  // files (oneDriver, test/support/databases.ts; CERTFLEET_TEST_ALL_DRIVERS=1 runs them on both):
  // shown as skipped, with the reason, on Postgres.
  const notTheDatabase = oneDriver('pglite').includes(kind);
  const oneDriverName = (name: string) => `${name}${notTheDatabase ? '' : ' (skipped: not about the database, run on PGlite; CERTFLEET_TEST_ALL_DRIVERS=1 runs it here too)'}`;
  let database: TestDatabase;
  let t: TestService;
  let caPem: string;
  const publisher = (): CrlPublisher => t.service.crl.publisher!;
  const filePem = () => readFileSync(t.config.crlOutputPath, 'latin1');
  const fileNumber = () => parsePem(filePem()).crlNumber;
  const parsePem = (pem: string) => verifyCrl(crlPemToDer(pem), { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() });

  async function issue(device = 'DEVICE-001', validityDays = 30) {
    const res = await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: validityDays });
    expect(res.status).toBe(201);
    return { id: res.json.certificate.id as number, serial: res.json.certificate.serial_number as string, pem: res.json.cert_pem as string };
  }
  async function revoke(id: number, reason?: string) {
    const res = await t.call('acme', 'POST', `/customer/certificates/${id}/revoke`, reason === undefined ? undefined : { reason });
    expect(res.status).toBe(200);
  }
  const getCrl = (url: string, headers: Record<string, string> = {}) => t.service.app.inject({ method: 'GET', url, headers });
  /**
   * database.reset() but for the CA records: on Postgres the service re-reads them every 60 s, and
   * a test that outlasts that on a busy machine (the tool checks do) left it without its Device CA
   * (503 CA_NOT_CONFIGURED for the rest of the file). Every other table is emptied as before.
   */
  const resetKeepingCas = () =>
    database.driver.transaction((tx) =>
      tx.exec(`DO $$ DECLARE t text; BEGIN
        FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT IN ('schema_migrations', 'certificate_authorities') LOOP
          EXECUTE format('TRUNCATE TABLE %I RESTART IDENTITY CASCADE', t);
        END LOOP;
      END $$;`),
    );

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // The development CA is created a week back, so certificates can be issued "three days ago" below.
    t = await startTestService(database, { clock: createManualClock(new Date(Date.now() - 7 * DAY_MS + 3_600_000)), overrides: { crl: { refreshTimer: false } } });
    t.clock.set(new Date());
    caPem = t.service.ca.ca!.certPem;
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await publisher().idle();
    await resetKeepingCas();
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
    await publisher().publishNow();
  });

  it.runIf(notTheDatabase)(oneDriverName('serves the stored CRL: DER, PEM and the seed’s attachment, with ETag, Last-Modified, Cache-Control and 304'), async () => {
    const stored = await database.db.asOperator((tx) => readCrl(tx, crlAuthorityFor(t.service.ca.ca!).issuerKeyId));
    const der = await getCrl('/pki/crl');
    expect(der.statusCode).toBe(200);
    expect(der.headers['content-type']).toBe('application/pkix-crl');
    expect(der.rawPayload.equals(stored!.der)).toBe(true);
    expect(der.headers.etag).toBe(`"${stored!.info.sha256}"`);
    expect(der.headers['last-modified']).toBe(stored!.info.thisUpdate!.toUTCString());
    expect(der.headers['cache-control']).toMatch(/^public, max-age=\d+$/);
    expect(Number(/max-age=(\d+)/.exec(String(der.headers['cache-control']))![1])).toBeLessThan(t.config.crlRefreshMinutes * 60);

    const pem = await getCrl('/pki/crl.pem');
    expect(pem.headers['content-type']).toBe('application/x-pem-file');
    expect(pem.body).toMatch(/^-----BEGIN X509 CRL-----\n/);
    expect(crlPemToDer(pem.body).equals(stored!.der)).toBe(true);
    // the broker's file: the same CRL (number, entries) without the Issuing Distribution Point
    expect(parsePem(pem.body).crlNumber).toBe(fileNumber());
    expect(run('openssl', ['crl', '-noout', '-text'], pem.body).out).toContain(`URI:${t.service.crl.distributionPointUrl}`);
    expect(run('openssl', ['crl', '-noout', '-text'], filePem()).out).not.toContain('Issuing Distribution Point');

    const seed = await t.call('acme', 'GET', '/customer/crl');
    expect(seed.status).toBe(200);
    expect(seed.headers['content-type']).toBe('application/x-pem-file');
    expect(seed.headers['content-disposition']).toBe('attachment; filename=device-crl.pem');
    expect(seed.body).toBe(pem.body);
    expect((await t.service.app.inject({ method: 'GET', url: '/customer/crl' })).statusCode).toBe(401);

    // 304 on If-None-Match (and If-Modified-Since); a GET never signs a new CRL
    expect((await getCrl('/pki/crl', { 'if-none-match': String(der.headers.etag) })).statusCode).toBe(304);
    expect((await getCrl('/pki/crl', { 'if-none-match': `"nope", W/${der.headers.etag}` })).statusCode).toBe(304);
    expect((await getCrl('/pki/crl.pem', { 'if-none-match': String(pem.headers.etag) })).statusCode).toBe(304);
    expect((await getCrl('/pki/crl', { 'if-modified-since': String(der.headers['last-modified']) })).statusCode).toBe(304);
    expect((await getCrl('/pki/crl', { 'if-none-match': '"other"' })).statusCode).toBe(200);
    const ca = await getCrl('/pki/ca.pem');
    expect(ca.body).toBe(caPem);
    expect(ca.headers.etag).toBeTruthy();
    expect((await getCrl('/pki/ca.pem', { 'if-none-match': String(ca.headers.etag) })).statusCode).toBe(304);
    const after = await database.db.asOperator((tx) => readCrlInfo(tx, stored!.info.issuerKeyId));
    expect(after!.crlNumber).toBe(stored!.info.crlNumber);

    // a revocation makes a new CRL: new ETag, and the old one no longer matches
    const cert = await issue();
    await revoke(cert.id, 'keyCompromise');
    await publisher().idle();
    const fresh = await getCrl('/pki/crl', { 'if-none-match': String(der.headers.etag) });
    expect(fresh.statusCode).toBe(200);
    expect(fresh.headers.etag).not.toBe(der.headers.etag);
    expect(verifyCrl(fresh.rawPayload, { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() }).entryCount).toBe(1);
  });

  it('publishes after real revocations: accepted by openssl, certtool and Python; openssl verify -crl_check says revoked or OK', async () => {
    const before = fileNumber();
    const compromised = await issue();
    const lost = await issue();
    const rotated = await issue();
    const good = await issue();
    await revoke(compromised.id, 'keyCompromise');
    await revoke(lost.id, 'lost in the field'); // free text: unspecified, no reason code in the entry
    await revoke(rotated.id, 'rotated'); // superseded
    await publisher().idle();

    const served = (await t.call('acme', 'GET', '/customer/crl')).body;
    const servedTools = await checkWithTools(caPem, served);
    expect(run('openssl', ['crl', '-noout', '-text'], served).out).toMatch(new RegExp(`Issuing Distribution Point: critical[\\s\\S]*URI:${t.service.crl.distributionPointUrl}`));
    const pem = filePem();
    const tools = await checkWithTools(caPem, pem);
    expect(tools.number).toBeGreaterThan(before);
    expect(tools.number).toBe(fileNumber());
    // The same number and serials; the served CRL carries the reasons, the broker's file none (brokers never read them).
    expect(servedTools.number).toBe(tools.number);
    expect(servedTools.entries).toEqual({ [compromised.serial]: 'key_compromise', [lost.serial]: null, [rotated.serial]: 'superseded' });
    expect(tools.entries).toEqual({ [compromised.serial]: null, [lost.serial]: null, [rotated.serial]: null });
    const servedText = run('openssl', ['crl', '-noout', '-text'], served).out;
    expect(servedText).toContain('Key Compromise');
    expect(servedText).toContain('Superseded');
    expect(servedText).not.toContain('Unspecified');
    const text = run('openssl', ['crl', '-noout', '-text'], pem).out;
    expect(text).not.toContain('CRL entry extensions');
    expect(text).not.toContain('Reason Code');
    expect(text).toMatch(/X509v3 CRL Number:\s+\d+/);
    expect(text).toContain('X509v3 Authority Key Identifier');
    expect(text).not.toContain('Issuing Distribution Point'); // the file: a complete CRL, covers every distribution point

    for (const cert of [compromised, lost, rotated]) {
      const v = opensslVerify(caPem, cert.pem, { crlPem: pem });
      expect(v.out).toContain('certificate revoked');
      expect(v.code).not.toBe(0);
    }
    const ok = opensslVerify(caPem, good.pem, { crlPem: pem });
    expect(ok.out).toContain(': OK');
    expect(ok.code).toBe(0);

    const metrics = await t.service.metrics.metrics();
    expect(metrics).toMatch(new RegExp(`^certfleet_crl_number ${tools.number}$`, 'm'));
    expect(metrics).toMatch(/^certfleet_crl_entries 3$/m);
    expect(metrics).toMatch(/^certfleet_crl_next_update_timestamp_seconds \d+$/m);
    expect(metrics).toMatch(/^certfleet_crl_publish_duration_seconds_count \d+$/m);
    const nextUpdate = Number(/^certfleet_crl_next_update_timestamp_seconds (\d+)$/m.exec(metrics)![1]);
    expect(nextUpdate * 1000 - t.clock.now().getTime()).toBeGreaterThan(7 * DAY_MS - 2000); // CRL_VALIDITY_HOURS default 168
  });

  it('keeps an expired revoked certificate until one CRL with thisUpdate after its notAfter listed it (RFC 5280 3.3); file mode 0644', async () => {
    // The tools check thisUpdate against the wall clock, so the whole sequence happens in the past.
    const now = t.clock.now();
    await publisher().idle();
    await resetKeepingCas();
    t.clock.set(new Date(now.getTime() - 3 * DAY_MS));
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
    const shortLived = await issue('DEVICE-001', 1); // notAfter: now - 2 days
    const longLived = await issue('DEVICE-001', 30);
    await revoke(shortLived.id, 'superseded');
    await revoke(longLived.id, 'superseded');
    await publisher().idle();
    const listed = async () => Object.keys((await checkWithTools(caPem, filePem())).entries!).sort();
    const both = [shortLived.serial, longLived.serial].sort();
    expect(await listed()).toEqual(both); // CRL 1: thisUpdate before notAfter

    t.clock.set(new Date(now.getTime() - 1 * DAY_MS)); // the short-lived certificate expired a day ago
    await publisher().publishNow();
    expect(await listed()).toEqual(both); // CRL 2: the first with thisUpdate after its notAfter still lists it

    t.clock.set(now);
    await publisher().publishNow();
    expect(await listed()).toEqual([longLived.serial]); // CRL 3: the previous one already had thisUpdate after notAfter
    await publisher().publishNow();
    expect(await listed()).toEqual([longLived.serial]);
    expect(statSync(t.config.crlOutputPath).mode & 0o777).toBe(0o644);
    expect(opensslVerify(caPem, longLived.pem, { crlPem: filePem() }).out).toContain('certificate revoked');
  });

  it('lists only its own CA’s certificates: another CA’s revoked certificate with the same serial never blocks a publication', async () => {
    const ours = await issue();
    await revoke(ours.id, 'keyCompromise');
    await publisher().idle();
    // Another Device CA (e.g. the previous one) whose certificate has the very same serial number.
    await database.driver.transaction((tx) =>
      tx.query(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
           status, not_before, not_after, revoked_at, revoked_reason)
         VALUES ('acme', 'DEVICE-001', '-', md5($1), 'acme/DEVICE-001', 'Another Device CA', $1, 'ec-p256', 'REVOKED',
           $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day', $2::timestamptz - interval '1 hour', 'superseded'),
           ('acme', 'DEVICE-001', '-', md5($1 || 'b'), 'acme/DEVICE-001', 'Another Device CA', 'abc123', 'ec-p256', 'REVOKED',
           $2::timestamptz - interval '1 day', $2::timestamptz + interval '1 day', $2::timestamptz - interval '1 hour', 'superseded')`,
        [ours.serial, t.clock.now()],
      ),
    );
    const result = await publisher().publishNow();
    expect(result.published).toBe(true);
    expect((await checkWithTools(caPem, filePem())).entries).toEqual({ [ours.serial]: null }); // the broker file lists no reasons
    expect((await checkWithTools(caPem, (await t.call('acme', 'GET', '/customer/crl')).body)).entries).toEqual({ [ours.serial]: 'key_compromise' });
  });

  it('a start publishes a revocation committed after the stored CRL’s read (the process died before publishing it), once', async () => {
    const cert = await issue();
    await publisher().idle();
    const before = fileNumber();
    const dataDir = t.dataDir;
    await t.close();
    // What a killed process leaves: the revocation committed (answered 200), no CRL built from it;
    // and a temp file written by a publication that never got renamed.
    await database.db.asTenant('acme', (tx) =>
      tx.query(
        `WITH revoked AS (UPDATE device_certificates SET status = 'REVOKED', revoked_at = $2, revoked_reason = 'keyCompromise', updated_at = $2
           WHERE id = $1 RETURNING issuer)
         INSERT INTO crl_pending_revocations (issuer) SELECT issuer FROM revoked`,
        [cert.id, t.clock.now()],
      ),
    );
    const leftover = join(dirname(t.config.crlOutputPath), `.device-crl.pem.${process.pid}.0123456789ab.tmp`);
    writeFileSync(leftover, 'half a CRL');
    t = await startTestService(database, { dataDir, clock: t.clock, overrides: { crl: { refreshTimer: false } } });
    await publisher().idle();
    expect((await checkWithTools(caPem, filePem())).entries).toEqual({ [cert.serial]: null }); // the broker file lists no reasons
    expect(fileNumber()).toBe(before + 1n); // one CRL at start, not two
    expect(publisher().status().publications).toBe(1);
    expect(readdirSync(dirname(t.config.crlOutputPath)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // and a start with nothing pending and a fresh CRL publishes none
    await t.close();
    t = await startTestService(database, { dataDir, clock: t.clock, overrides: { crl: { refreshTimer: false } } });
    await publisher().idle();
    if (kind === 'pglite') expect(fileNumber()).toBe(before + 1n);
    expect(fileNumber() <= before + 2n).toBe(true);
  });

  it.runIf(notTheDatabase)(oneDriverName('coalesces revocations signalled during a publication into exactly one more, which lists them all'), async () => {
    const certs = [];
    for (let i = 0; i < 12; i++) certs.push(await issue());
    for (const c of certs) await revoke(c.id, 'cessationOfOperation');
    await publisher().idle();
    // A publisher of its own whose first publication is held at its store until released (no timing involved).
    let saves = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const h = harness({
      storage: storageWithSaveCrl(async (save) => {
        if (++saves === 1) await gate;
        return save();
      }),
    });
    h.publisher.revocationCommitted();
    await waitFor(() => saves === 1, 30_000, 'the first publication reaches its store');
    for (let i = 1; i < certs.length; i++) h.publisher.revocationCommitted();
    release();
    await h.publisher.idle();
    expect(h.publisher.status().publications).toBe(2);
    const tools = await checkWithTools(caPem, readFileSync(h.path, 'latin1'));
    expect(Object.keys(tools.entries!).sort()).toEqual(certs.map((c) => c.serial).sort());
    await h.publisher.stop();
  });

  // 4k rows: past the 64 KB where the entries' DER lengths take three octets, and 60+ of PGlite's
  // 64-row cursor batches; the 10k to 1M sizes are bench/crl-publish.bench.ts's (this was 20k).
  it('streams many revoked rows from the database (4k, mixed serial lengths and reasons) into a CRL the tools accept', async () => {
    const issuer = t.service.ca.ca!.issuerLabel;
    await insertRevokedCertificates(database.driver, { count: BULK, now: t.clock.now(), issuer });
    // short serials sort by length first (numerically), reasons the encoder must not choke on
    await database.driver.transaction((tx) =>
      tx.query(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type,
           status, not_before, not_after, revoked_at, revoked_reason)
         SELECT 'acme', 'DEVICE-001', '-', md5(s) || md5(s || 'x'), 'acme/DEVICE-001', $4, s, 'ec-p256', 'REVOKED', $1::timestamptz - interval '1 day',
           $1::timestamptz + interval '1 day', $1::timestamptz - interval '1 hour', r
         FROM unnest($2::text[], $3::text[]) AS u(s, r)`,
        [t.clock.now(), ['1', 'a', 'ff', '100', '7fffffff', '80000000'], ['removeFromCRL', 'certificateHold', 'x', 'AACompromise', 'keyCompromise', 'privilegeWithdrawn'], issuer],
      ),
    );
    const result = await publisher().publishNow();
    expect(result.published).toBe(true);
    expect(result.entries).toBe(BULK + 6);
    expect(crlPemToDer(filePem()).length).toBeGreaterThan(65_536 + 1_000); // the size is not what this proves, but it must stay past the 64 KB DER boundary
    const pem = filePem();
    // The bytes do not depend on the driver (what does, reading the rows, openssl and Python
    // check on both): GnuTLS reads the big CRL once, on Postgres.
    const tools = await checkWithTools(caPem, pem, { certtool: kind === 'pg' });
    expect(tools.count).toBe(BULK + 6);
    expect(tools.number).toBe(result.crlNumber);
    const text = run('openssl', ['crl', '-noout', '-text'], pem).out;
    const serials = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => BigInt('0x' + m[1]));
    expect(serials.length).toBe(BULK + 6);
    expect(serials.every((s, i) => i === 0 || s > serials[i - 1])).toBe(true);
    expect(text).not.toContain('Reason Code'); // the broker file: no entry extensions
    // The served CRL: the same entries, with their reasons.
    const served = (await t.call('acme', 'GET', '/customer/crl')).body;
    const servedText = run('openssl', ['crl', '-noout', '-text'], served).out;
    expect([...servedText.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => BigInt('0x' + m[1]))).toEqual(serials);
    expect(servedText).toContain('Certificate Hold');
    expect(servedText).toContain('Privilege Withdrawn');
    expect(servedText).not.toContain('Remove From CRL');
  }, scaled(600_000)); // rows inserted, signed, and parsed by three tools

  it('publishes an (empty) CRL at start: 503 CRL_NOT_AVAILABLE only while none was ever stored', async () => {
    await publisher().idle();
    await resetKeepingCas();
    const none = await getCrl('/pki/crl');
    expect(none.statusCode).toBe(503);
    expect(none.json().code).toBe('CRL_NOT_AVAILABLE');
    const dataDir = t.dataDir;
    await t.close();
    t = await startTestService(database, { dataDir, clock: t.clock, overrides: { crl: { refreshTimer: false } } });
    const first = await getCrl('/pki/crl.pem');
    expect(first.statusCode).toBe(200);
    const tools = await checkWithTools(caPem, first.body);
    expect(tools.count).toBe(0);
    expect(parsePem(first.body).crlNumber).toBe(fileNumber());
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
  });

  it('keeps numbers strictly increasing across a service restart', async () => {
    await revoke((await issue()).id, 'keyCompromise');
    await publisher().idle();
    const before = fileNumber();
    const dataDir = t.dataDir;
    await t.close();
    t = await startTestService(database, { dataDir, clock: t.clock, overrides: { crl: { refreshTimer: false } } });
    expect(fileNumber()).toBeGreaterThanOrEqual(before);
    const result = await publisher().publishNow();
    expect(result.crlNumber!).toBeGreaterThan(before);
    expect(fileNumber()).toBe(result.crlNumber);
    // and across a database that lost its crl_state (restored backup): the file's number is the floor
    await database.driver.transaction((tx) => tx.query('TRUNCATE crl_state'));
    const again = await publisher().publishNow();
    expect(again.crlNumber!).toBe(result.crlNumber! + 1n);
    expect((await checkWithTools(caPem, filePem())).number).toBe(again.crlNumber);
  });

  it.runIf(notTheDatabase)(oneDriverName('never writes the file or signals the broker when verification fails (bad signature, nextUpdate in the past)'), async () => {
    const ca = t.service.ca.ca!;
    const good = crlAuthorityFor(ca);
    const badSignature: CrlAuthority = {
      ...good,
      signer: { algorithmIdentifierDer: good.signer.algorithmIdentifierDer, sign: (tbs) => { const s = Buffer.from(good.signer.sign(tbs)); s[s.length - 3] ^= 0x5a; return s; } },
    };
    let calls = 0;
    const jumpingClock: Clock = { now: () => new Date(t.clock.now().getTime() + (calls++ === 0 ? 0 : 8 * DAY_MS)) };
    for (const [authority, clock, code] of [
      [badSignature, t.clock, 'BAD_SIGNATURE'],
      [good, jumpingClock, 'EXPIRED'],
    ] as const) {
      calls = 0;
      const h = harness({ authority, clock });
      await revoke((await issue()).id, 'keyCompromise');
      await publisher().idle();
      const fileBefore = readFileSync(h.path);
      const storedBefore = await database.db.asOperator((tx) => readCrlInfo(tx, good.issuerKeyId));
      const error = await h.publisher.publishNow().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CrlVerificationError);
      expect((error as CrlVerificationError).code).toBe(code);
      expect(h.reloads()).toBe(0);
      expect(readFileSync(h.path).equals(fileBefore)).toBe(true);
      expect((await database.db.asOperator((tx) => readCrlInfo(tx, good.issuerKeyId)))!.crlNumber).toBe(storedBefore!.crlNumber);
      expect(h.publisher.status().consecutiveFailures).toBe(1);
      await h.publisher.stop();
    }

    // the file sync verifies again: a tampered CRL never replaces the file
    const h = harness({});
    const stored = (await database.db.asOperator((tx) => readCrl(tx, good.issuerKeyId)))!;
    const tampered = Buffer.from(stored.der);
    tampered[tampered.length - 5] ^= 0xff;
    const fileBefore = readFileSync(h.path);
    await expect(h.fileSync.sync({ crlNumber: stored.info.crlNumber + 10n, der: tampered })).rejects.toThrow(/signature/);
    expect(readFileSync(h.path).equals(fileBefore)).toBe(true);
    expect(h.reloads()).toBe(0);
    await h.publisher.stop();
  });

  it('writes the file before the CRL is stored; if storing fails, the next publication numbers above the file', async () => {
    const { serial, id } = await issue();
    await revoke(id, 'keyCompromise');
    await publisher().idle();
    const issuerKeyId = crlAuthorityFor(t.service.ca.ca!).issuerKeyId;
    const storedNumber = (await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!.crlNumber;
    let failStore = true;
    const h = harness({
      storage: storageWithSaveCrl(async (save) => {
        if (failStore) throw new Error('no space left on device');
        return save();
      }),
    });
    await expect(h.publisher.publishNow()).rejects.toThrow(/no space left/);
    const written = verifyCrl(crlPemToDer(readFileSync(h.path, 'latin1')), { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() });
    expect(written.crlNumber).toBe(storedNumber + 1n); // on disk, and the broker told, although the store failed
    expect(h.reloads()).toBe(1);
    expect(run('openssl', ['crl', '-in', h.path, '-noout', '-text']).out.toUpperCase()).toContain(serial.toUpperCase());
    expect((await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!.crlNumber).toBe(storedNumber);

    failStore = false;
    const next = await h.publisher.publishNow();
    expect(next.crlNumber).toBe(storedNumber + 2n);
    expect((await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!.crlNumber).toBe(storedNumber + 2n);
    expect(verifyCrl(crlPemToDer(readFileSync(h.path, 'latin1')), { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() }).crlNumber).toBe(storedNumber + 2n);
    await h.publisher.stop();
  });

  it.runIf(notTheDatabase)(oneDriverName('believes the number a file claims only once verified: a forged higher claim is replaced, a valid newer CRL is kept'), async () => {
    const h = harness({});
    const older = crlPemToDer(readFileSync(h.path, 'latin1'));
    const current = parsePem(readFileSync(h.path, 'latin1')).crlNumber;
    // Another CA's CRL numbered far above ours, in the broker's file: its claim raises the floor, but it is not ours.
    const created = await createDeviceCa({ now: new Date(Date.now() - DAY_MS), commonName: 'Another Device CA' });
    const other = await deviceCaFromPem(created.certPem, created.keyPem);
    const otherAuthority = crlAuthorityFor(other);
    const forged = buildCrl({
      issuerNameDer: otherAuthority.issuerNameDer,
      authorityKeyId: otherAuthority.authorityKeyId,
      thisUpdate: t.clock.now(),
      nextUpdate: new Date(t.clock.now().getTime() + DAY_MS),
      crlNumber: current + 1000n,
      revoked: Buffer.alloc(0),
      signer: otherAuthority.signer,
    });
    writeFileSync(h.path, crlDerToPem(forged));
    expect(await h.fileSync.claimedNumber()).toBe(current + 1000n);
    expect(await h.fileSync.fileNumber()).toBeNull();
    const replaced = await h.publisher.publishNow();
    expect(replaced.crlNumber).toBe(current + 1001n);
    expect(parsePem(readFileSync(h.path, 'latin1')).crlNumber).toBe(current + 1001n);

    // A valid CRL of ours numbered above one to write stays (another replica got there first).
    const newer = readFileSync(h.path);
    const sync = await h.fileSync.sync({ crlNumber: current, der: older });
    expect(sync).toMatchObject({ file: 'older', fileNumber: current + 1001n });
    expect(readFileSync(h.path).equals(newer)).toBe(true);
    await h.publisher.stop();
  });

  it.runIf(notTheDatabase)(oneDriverName('a crash between the temp file and the rename leaves the previous file in place and valid'), async () => {
    let crash = true;
    const fs: CrlFs = {
      ...nodeCrlFs,
      async rename(from, to) {
        if (crash) throw Object.assign(new Error('simulated crash before rename'), { code: 'EIO' });
        return nodeCrlFs.rename(from, to);
      },
    };
    const h = harness({ fs });
    await revoke((await issue()).id, 'keyCompromise');
    await publisher().idle();
    const before = readFileSync(h.path, 'latin1');
    const reloadsBefore = h.reloads();
    await expect(h.publisher.publishNow()).rejects.toThrow(/simulated crash/);
    expect(readFileSync(h.path, 'latin1')).toBe(before);
    expect((await checkWithTools(caPem, before)).number).toBe(parsePem(before).crlNumber);
    expect(readdirSync(dirname(h.path)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(h.reloads()).toBe(reloadsBefore);
    crash = false;
    const ok = await h.publisher.publishNow();
    expect(parsePem(readFileSync(h.path, 'latin1')).crlNumber).toBe(ok.crlNumber);
    expect(ok.crlNumber!).toBeGreaterThan(parsePem(before).crlNumber);
    expect(h.reloads()).toBe(reloadsBefore + 1);
    await h.publisher.stop();
  });

  it.runIf(notTheDatabase)(oneDriverName('signals the broker once the file is renamed into place, without waiting for the folder fsync; the commit waits for it'), async () => {
    const steps: string[] = [];
    let releaseFsync: () => void = () => undefined;
    const fsyncGate = new Promise<void>((resolve) => (releaseFsync = resolve));
    let gate = false;
    // Whatever happens, the fsync is released before the test ends (a failure must not leave the transaction open).
    const releaseFsyncLater = () => setTimeout(() => releaseFsync(), 0);
    const fs: CrlFs = {
      ...nodeCrlFs,
      async rename(from, to) {
        await nodeCrlFs.rename(from, to);
        steps.push('rename');
      },
      async fsyncDir(dir) {
        steps.push('fsyncDir');
        if (gate) await fsyncGate;
        await nodeCrlFs.fsyncDir(dir);
        steps.push('fsyncDir done');
      },
    };
    let reloads = 0;
    const reloader: BrokerReloader = { configured: true, description: 'spy', reload: async () => void (reloads++, steps.push('reload')) };
    const h = harness({ fs, reloader });
    await revoke((await issue()).id, 'keyCompromise');
    await publisher().idle();
    const issuerKeyId = crlAuthorityFor(t.service.ca.ca!).issuerKeyId;
    const storedBefore = (await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!.crlNumber;
    gate = true;
    steps.length = 0;
    let settled = false;
    const publishing = h.publisher.publishNow().finally(() => (settled = true));
    // Bounded, so that the code before this change (signal after the fsync) fails here instead of hanging.
    await waitFor(() => reloads === 1, 30_000, 'the broker signalled while the folder fsync is held').finally(releaseFsyncLater);
    // In place and verified (the new CRL, readable by the broker) before the signal; the publication
    // (its commit) still waits for the fsync. (The database is not read here: PGlite has one connection, held by it.)
    const onDisk = verifyCrl(crlPemToDer(readFileSync(h.path, 'latin1')), { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() });
    expect(onDisk.crlNumber).toBeGreaterThan(storedBefore);
    expect(steps.indexOf('rename')).toBeLessThan(steps.indexOf('reload'));
    expect(steps).not.toContain('fsyncDir done');
    expect(settled).toBe(false);
    releaseFsync();
    const done = await publishing;
    expect(done.crlNumber).toBe(onDisk.crlNumber);
    expect(steps).toContain('fsyncDir done');
    expect((await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!.crlNumber).toBe(onDisk.crlNumber);
    expect(done.file?.reloaded).toBe(true);
    await h.publisher.stop();
  });

  it.runIf(notTheDatabase)(oneDriverName('retries a failed broker reload (stale pid file) while the file stays valid'), async () => {
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-broker-'));
    const pidFile = join(dir, 'mosquitto.pid');
    // A PID above pid_max: no process has it, and none ever will (a dead child's PID could be reused).
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    writeFileSync(pidFile, `${pidMax + 1}\n`);
    const stale = createBrokerReloader({ pidFile });
    let attempts = 0;
    let healed = false;
    const reloader: BrokerReloader = {
      configured: true,
      description: stale.description,
      async reload() {
        attempts++;
        if (!healed) await stale.reload();
      },
    };
    const h = harness({ reloader, retryMs: 40 });
    await revoke((await issue()).id, 'keyCompromise');
    const result = await h.publisher.publishNow();
    expect(result.file?.file).toBe('written');
    expect(result.file?.reloaded).toBe(false);
    expect(result.file?.reloadError).toMatch(/stale broker pid file/);
    expect(h.publisher.status().reloadPending).toBe(true);
    await checkWithTools(caPem, readFileSync(h.path, 'latin1'));
    await waitFor(() => attempts >= 3, 60_000, 'reload retried');
    healed = true;
    await waitFor(() => !h.publisher.status().reloadPending, 60_000, 'reload succeeded');
    // The service's own publisher may store a newer CRL meanwhile (the revocation's NOTIFY); a retry then
    // syncs that one. Either way the file holds a valid CRL at least as new as the one published here.
    const onDisk = readFileSync(h.path, 'latin1');
    expect(parsePem(onDisk).crlNumber >= result.crlNumber!).toBe(true);
    await checkWithTools(caPem, onDisk);
    expect(await h.metrics()).toMatch(/^certfleet_crl_broker_reload_failures_total [1-9]\d*$/m);
    await h.publisher.stop();
  });

  // Postgres only (several connections); registered only there, so PGlite reports no skip.
  it.runIf(kind === 'pg')(`serialises concurrent publishers on one Postgres: distinct, strictly increasing numbers${kind === 'pg' ? '' : ' (skipped: Postgres only: PGlite is one in-process connection)'}`, async () => {
    const authority = crlAuthorityFor(t.service.ca.ca!);
    const drivers = Array.from({ length: 4 }, () => createPgDriver(database.url!, { max: 2 }));
    try {
      const publishers = drivers.map((d) =>
        createPublishCrl({ storage: createStorage(createDatabase(d)), clock: t.clock, authority, settings: { validityHours: 168, distributionPointUrl: t.service.crl.distributionPointUrl } }),
      );
      const start = (await database.db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId)))!.crlNumber;
      const results = await Promise.all(publishers.flatMap((p) => [p(), p()]));
      const numbers = results.map((r) => (r.published ? r.crl.crlNumber : -1n)).sort((a, b) => (a < b ? -1 : 1));
      expect(numbers).toEqual(Array.from({ length: 8 }, (_, i) => start + BigInt(i + 1)));
      const stored = (await database.db.asOperator((tx) => readCrl(tx, authority.issuerKeyId)))!;
      expect(stored.info.crlNumber).toBe(start + 8n);
      expect((await checkWithTools(caPem, (await getCrl('/pki/crl.pem')).body)).number).toBe(start + 8n);
    } finally {
      await Promise.all(drivers.map((d) => d.close()));
    }
  });

  it.runIf(kind === 'pg')(`across processes: an API replica NOTIFYs, the publishing process rebuilds; another worker syncs its own file${kind === 'pg' ? '' : ' (skipped: Postgres only: PGlite is one in-process connection)'}`, async () => {
    const api = await startTestService(database, {
      clock: t.clock,
      env: { DEVICE_CA_CERT_PATH: t.config.caCertPath, DEVICE_CA_KEY_PATH: t.config.caKeyPath },
      overrides: { publishCrl: false },
    });
    const otherWorker = await startTestService(database, {
      clock: t.clock,
      env: {
        CRL_OUTPUT_PATH: join(mkdtempSync(join(tmpdir(), 'certfleet-worker2-')), 'crl.pem'),
        DEVICE_CA_CERT_PATH: t.config.caCertPath,
        DEVICE_CA_KEY_PATH: t.config.caKeyPath,
      },
      overrides: { crl: { refreshTimer: false } },
    });
    try {
      expect(api.service.crl.publisher).toBeNull();
      await publisher().idle();
      await otherWorker.service.crl.publisher!.idle();
      const cert = await issue();
      const before = fileNumber();
      const res = await api.call('acme', 'POST', `/customer/certificates/${cert.id}/revoke`, { reason: 'keyCompromise' });
      expect(res.status).toBe(200);
      await waitFor(() => fileNumber() > before, 60_000, 'the worker published after the NOTIFY');
      const otherFile = () => verifyCrl(crlPemToDer(readFileSync(otherWorker.config.crlOutputPath, 'latin1')), { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() }).crlNumber;
      await waitFor(async () => {
        await publisher().idle();
        const stored = (await database.db.asOperator((tx) => readCrlInfo(tx, crlAuthorityFor(t.service.ca.ca!).issuerKeyId)))!.crlNumber;
        return fileNumber() === stored && otherFile() === stored;
      }, 10_000, 'both files hold the stored CRL');
      // The API replica serves the stored CRL it learnt of by the NOTIFY: eventually the one the files hold.
      const stored = (await database.db.asOperator((tx) => readCrlInfo(tx, crlAuthorityFor(t.service.ca.ca!).issuerKeyId)))!.crlNumber;
      let pem = '';
      await waitFor(async () => {
        pem = (await api.call('acme', 'GET', '/customer/crl')).body as string;
        return parsePem(pem).crlNumber >= stored;
      }, 10_000, 'the API replica serves the stored CRL');
      expect(opensslVerify(caPem, cert.pem, { crlPem: pem }).out).toContain('certificate revoked');
      expect(opensslVerify(caPem, cert.pem, { crlPem: readFileSync(otherWorker.config.crlOutputPath, 'latin1') }).out).toContain('certificate revoked');
    } finally {
      await api.close();
      await otherWorker.close();
    }
  });

  /** A second publisher on the same database with its own file, reloader spy and seams. */
  /** The real storage, with each saveCrl passed through `around` (which runs the real one with save()). */
  function storageWithSaveCrl(around: (save: () => Promise<StoredCrlInfo>) => Promise<StoredCrlInfo>): Storage {
    const real = createStorage(database.db);
    return {
      ...real,
      asOperator: (fn) => real.asOperator((repos) => fn({ ...repos, crl: { ...repos.crl, saveCrl: (...args) => around(() => repos.crl.saveCrl(...args)) } })),
    };
  }

  function harness(options: { authority?: CrlAuthority; clock?: Clock; fs?: CrlFs; reloader?: BrokerReloader; retryMs?: number; storage?: Storage }) {
    const ca = t.service.ca.ca!;
    const good = crlAuthorityFor(ca);
    const path = join(mkdtempSync(join(tmpdir(), 'certfleet-crlfile-')), 'device-crl.pem');
    writeFileSync(path, filePem(), { mode: 0o644 }); // the previous good file
    let reloads = 0;
    const reloader: BrokerReloader = options.reloader ?? { configured: true, description: 'spy', reload: async () => void reloads++ };
    const clock = options.clock ?? t.clock;
    const fileSync = createCrlFileSync({ path, caPublicKey: ca.publicKey, issuerNameDer: good.issuerNameDer, clock, reloader, logger: quiet, fs: options.fs });
    const registry = new Registry();
    const storage = options.storage ?? createStorage(database.db);
    const authority = options.authority ?? good;
    const publish = createPublishCrl({ storage, clock, authority, settings: { validityHours: 168, distributionPointUrl: t.service.crl.distributionPointUrl }, file: fileSync });
    const p = createCrlPublisher({
      pipeline: createCrlPipeline({ publish, storage, authority, file: fileSync, sessions: null, logger: quiet }),
      clock,
      logger: quiet,
      metrics: registry,
      staleAfterMs: 3_600_000,
      retryMs: options.retryMs ?? 60_000,
    });
    return { path, publisher: p, fileSync, reloads: () => reloads, metrics: () => registry.metrics() };
  }
});

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
