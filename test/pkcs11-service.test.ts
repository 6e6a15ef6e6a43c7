/**
 * The service with its Device CA key in a PKCS#11 token (SoftHSM2), over the HTTP API on PGlite
 * (oneDriver: the token, not the driver, is the subject): certificates issued and a CRL published, all signed by the token, verified by
 * openssl. And the service refuses to start with a token key it cannot use.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createService } from '../src/composition/service.ts';
import { createWorker } from '../src/composition/worker.ts';
import { silentLogger } from '../src/support/logger.ts';
import { crlDerToPem } from '../src/crl/verify-crl.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { createDeviceCaInToken } from '../src/pki/kms/ca-certificate.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { opensslCsr, opensslVerify } from './support/openssl.ts';
import { startTestService, testConfig, type TestService } from './support/service.ts';
import { SOFTHSM_MODULE, softHsm, softHsmMissing, type SoftHsm } from './support/softhsm.ts';

const PIN = '135790';
const TOKEN = 'certfleet';
const skipped = softHsmMissing ? ` (skipped: ${softHsmMissing})` : '';

let hsm: SoftHsm;
let caDir: string;
let env: Record<string, string>;

beforeAll(async () => {
  if (softHsmMissing) return;
  hsm = softHsm();
  hsm.initToken(TOKEN, PIN);
  const made = await createDeviceCaInToken({ uri: `pkcs11:token=${TOKEN};object=device-ca`, modulePath: SOFTHSM_MODULE, pin: PIN, now: new Date(Date.now() - 86_400_000) });
  caDir = mkdtempSync(join(tmpdir(), 'certfleet-token-ca-'));
  writeFileSync(join(caDir, 'device-ca.crt'), made.certPem);
  env = {
    DEVICE_CA_CERT_PATH: join(caDir, 'device-ca.crt'),
    DEVICE_CA_KEY_URI: 'pkcs11:token=certfleet;object=device-ca',
    PKCS11_PIN_FILE: hsm.pinFile(PIN),
    PKCS11_MODULE_PATH: SOFTHSM_MODULE,
  };
});


/** One PGlite database for the file's services (opening one costs 2.5 to 3.5 s of CPU), emptied where a test needs it so. */
let pglite: TestDatabase | undefined;
const sharedPglite = async (): Promise<TestDatabase> => (pglite ??= await createTestDatabase('pglite'));
afterAll(async () => pglite?.close());

describe.runIf(!softHsmMissing).each(oneDriver('pglite'))(`issuing with the CA key in SoftHSM2 over the HTTP API on %s${skipped}`, (kind) => {
  let database: TestDatabase;
  let t: TestService;
  const revokedPems: string[] = [];

  beforeAll(async () => {
    database = kind === 'pglite' ? await sharedPglite() : await createTestDatabase(kind);
    t = await startTestService(database, { env, overrides: { crl: { refreshTimer: false } } });
  });
  afterAll(async () => {
    await t?.close();
    if (database !== pglite) await database?.close();
  });

  it('generates and signs certificates through the token, publishes a CRL signed there; openssl verifies both', async () => {
    const ca = t.service.ca.ca!;
    expect(ca.signer).toMatchObject({ kind: 'pkcs11', keyType: 'ec-p256', label: env.DEVICE_CA_KEY_URI });
    // No key file was made or read: the development CA is not created when a token key is configured.
    expect(existsSync(t.config.caKeyPath)).toBe(false);

    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
    const generated = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    expect(generated.status).toBe(201);
    expect(generated.json.ca_cert_pem).toBe(ca.certPem);
    const { csrPem } = opensslCsr('rsa-2048');
    const fromCsr = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/csr', { csr_pem: csrPem });
    expect(fromCsr.status).toBe(201);
    for (const pem of [generated.json.cert_pem, fromCsr.json.cert_pem]) {
      const v = opensslVerify(ca.certPem, pem);
      expect(v.out).toContain(': OK');
      expect(v.code).toBe(0);
    }

    expect((await t.call('acme', 'POST', `/customer/certificates/${generated.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await t.service.crl.publisher!.publishNow();
    const crl = await t.service.app.inject({ method: 'GET', url: '/pki/crl' });
    expect(crl.statusCode).toBe(200);
    const crlPem = crlDerToPem(crl.rawPayload);
    const revoked = opensslVerify(ca.certPem, generated.json.cert_pem, { crlPem });
    expect(revoked.out).toContain('certificate revoked');
    revokedPems.push(generated.json.cert_pem);
    const valid = opensslVerify(ca.certPem, fromCsr.json.cert_pem, { crlPem });
    expect(valid.out).toContain(': OK');
    expect(valid.code).toBe(0);
  });

  it('a standalone worker loads the token key too: its CRL file, signed by the token, lists the revoked certificate', async () => {
    expect(revokedPems).toHaveLength(1);
    const worker = await createWorker(t.config, { clock: t.clock, storage: database.storage, logger: silentLogger, holder: `pkcs11-${kind}` });
    try {
      expect(worker.crlPublication).not.toBeNull();
      await worker.crlPublication!.publisher!.publishNow();
      const file = readFileSync(t.config.crlOutputPath, 'latin1');
      expect(opensslVerify(t.service.ca.ca!.certPem, revokedPems[0], { crlPem: file }).out).toContain('certificate revoked');
    } finally {
      await worker.close();
    }
    // The service's own signer is untouched by the worker closing its own.
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' })).status).toBe(201);
  });
});

describe.runIf(!softHsmMissing)(`the service never starts with a token key it cannot use${skipped}`, () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await sharedPglite(); // none of these starts gets as far as the database
  });
  const start = (overrides: Record<string, string | undefined>) => {
    const merged = Object.fromEntries(Object.entries({ ...env, ...overrides }).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-test-'));
    return (async () => createService(testConfig(dataDir, merged), { storage: database.storage }))();
  };

  it('a URI that does not resolve: no such token, no such object', async () => {
    await expect(start({ DEVICE_CA_KEY_URI: 'pkcs11:token=absent;object=device-ca' })).rejects.toThrow(/no PKCS#11 token matches token "absent"/);
    await expect(start({ DEVICE_CA_KEY_URI: 'pkcs11:token=certfleet;object=absent' })).rejects.toThrow(/no private key with object "absent"/);
  });
  it('a wrong PIN', async () => {
    await expect(start({ PKCS11_PIN_FILE: hsm.pinFile('000000') })).rejects.toThrow(/wrong PIN for the PKCS#11 token "certfleet"/);
  });
  it('a module path that does not load', async () => {
    const bogus = join(caDir, 'libbogus.so');
    writeFileSync(bogus, 'not a shared object');
    await expect(start({ PKCS11_MODULE_PATH: bogus })).rejects.toThrow(/cannot load the PKCS#11 module PKCS11_MODULE_PATH=.*libbogus.so/);
  });
  it('a token key that does not match the CA certificate, and a missing certificate', async () => {
    const other = await createDeviceCa({ now: new Date() });
    const dir = join(caDir, 'other');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ca.crt'), other.certPem);
    await expect(start({ DEVICE_CA_CERT_PATH: join(dir, 'ca.crt') })).rejects.toThrow(/the Device CA key \(pkcs11:token=certfleet;object=device-ca\) does not match its certificate/);
    await expect(start({ DEVICE_CA_CERT_PATH: join(dir, 'missing.crt') })).rejects.toThrow(/DEVICE_CA_KEY_URI is set but the CA certificate DEVICE_CA_CERT_PATH=.*missing.crt does not exist/);
  });
  it('an unsupported key type', async () => {
    hsm.tool(TOKEN, PIN, ['--keypairgen', '--key-type', 'EC:secp521r1', '--label', 'p521', '--id', 'c1']);
    await expect(start({ DEVICE_CA_KEY_URI: 'pkcs11:token=certfleet;object=p521' })).rejects.toThrow(/unsupported CA key type .*EC P-521/);
  });
  it('configuration errors: a PIN in the environment, no PIN file, a PIN file others can read, a key path and a URI at once, a bad URI', async () => {
    await expect(start({ PKCS11_PIN: PIN })).rejects.toThrow(/PKCS11_PIN is not read .*PKCS11_PIN_FILE/);
    await expect(start({ PKCS11_PIN_FILE: undefined })).rejects.toThrow(/DEVICE_CA_KEY_URI is set but PKCS11_PIN_FILE is not/);
    await expect(start({ PKCS11_PIN_FILE: hsm.pinFile(PIN, 0o640) })).rejects.toThrow(/PKCS11_PIN_FILE.*accessible by group or others/);
    await expect(start({ DEVICE_CA_KEY_PATH: join(caDir, 'ca.key') })).rejects.toThrow(/DEVICE_CA_KEY_URI .* or DEVICE_CA_KEY_PATH .*not both/);
    await expect(start({ DEVICE_CA_KEY_URI: `pkcs11:token=certfleet;object=device-ca?pin-value=${PIN}` })).rejects.toThrow(/DEVICE_CA_KEY_URI: the PIN is never part of the URI/);
  });
  it('the right configuration starts (the failures above are about what they name)', async () => {
    const service = await start({});
    expect(service.ca.ca!.signer.kind).toBe('pkcs11');
    await service.close();
  });
});
