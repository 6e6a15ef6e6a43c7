/**
 * The CA key in a PKCS#11 token (SoftHSM2): keys generated or imported in the token sign
 * certificates and CRLs that openssl verifies, the key is not extractable, concurrent signing
 * works on a bounded session pool, and every bad configuration is a clear error.
 */
import { generateKeyPairSync, createPublicKey, verify } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrl, createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { crlDerToPem } from '../src/crl/verify-crl.ts';
import { caIdentityFromCertificate } from '../src/pki/crl-signer.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromSigner, type DeviceCa } from '../src/pki/device-ca.ts';
import { generateDeviceKey } from '../src/pki/keys.ts';
import { createCaCertificate, createDeviceCaInToken } from '../src/pki/kms/ca-certificate.ts';
import { crlSignerFor, type KeySigner } from '../src/pki/kms/key-signer.ts';
import { generateKeyInToken } from '../src/pki/kms/pkcs11/generate-key.ts';
import { acquireModule } from '../src/pki/kms/pkcs11/pkcs11-module.ts';
import { openPkcs11Signer } from '../src/pki/kms/pkcs11/pkcs11-signer.ts';
import { parsePkcs11Uri } from '../src/pki/kms/pkcs11/pkcs11-uri.ts';
import { readPinFile } from '../src/pki/kms/pkcs11/pin-file.ts';
import { opensslVerify, run } from './support/openssl.ts';
import { SOFTHSM_MODULE, softHsm, softHsmMissing, type SoftHsm } from './support/softhsm.ts';

const PIN = '246813';
const TOKEN = 'certfleet';
const NOW = new Date();

/** Two device certificates through the CA, a CRL revoking the first: openssl verifies the chain and the CRL. */
async function issueAndRevoke(ca: DeviceCa) {
  const authority = createCertificateAuthority(ca, { crlUrl: 'http://certfleet.test/pki/crl' });
  const issued = [];
  for (const cn of ['acme/DEVICE-1', 'acme/DEVICE-2']) {
    const { publicKey } = await generateDeviceKey('ec-p256');
    issued.push(await authority.issue({ tenantId: 't', commonName: cn, publicKey, notBefore: new Date(NOW.getTime() - 60_000), notAfter: new Date(NOW.getTime() + 86_400_000) }));
  }
  const identity = caIdentityFromCertificate(ca.certDer);
  const encoder = createRevokedEntriesEncoder();
  encoder.add({ serialHex: issued[0].serialHex, revokedAt: NOW, reasonCode: 1 });
  const crl = buildCrl({
    issuerNameDer: identity.subjectDer,
    authorityKeyId: identity.subjectKeyId,
    thisUpdate: new Date(NOW.getTime() - 1000),
    nextUpdate: new Date(NOW.getTime() + 86_400_000),
    crlNumber: 1n,
    revoked: encoder.finish(),
    signer: crlSignerFor(ca.signer),
  });
  return { issued, crlPem: crlDerToPem(crl) };
}

function expectOpensslAccepts(ca: DeviceCa, issued: { certPem: string }[], crlPem: string) {
  const plain = opensslVerify(ca.certPem, issued[1].certPem);
  expect(plain.out).toContain(': OK');
  expect(plain.code).toBe(0);
  const valid = opensslVerify(ca.certPem, issued[1].certPem, { crlPem });
  expect(valid.out).toContain(': OK');
  expect(valid.code).toBe(0);
  const revoked = opensslVerify(ca.certPem, issued[0].certPem, { crlPem });
  expect(revoked.out).toContain('certificate revoked');
  expect(revoked.code).not.toBe(0);
}

describe.runIf(!softHsmMissing)(`CA key in a PKCS#11 token (SoftHSM2)${softHsmMissing ? ` (skipped: ${softHsmMissing})` : ''}`, () => {
  let hsm: SoftHsm;
  const signers: KeySigner[] = [];
  const open = async (uri: string, extra: { pin?: string; maxSessions?: number; certificatePublicKey?: ReturnType<typeof createPublicKey> } = {}) => {
    const s = await openPkcs11Signer({ uri, modulePath: SOFTHSM_MODULE, pin: extra.pin ?? PIN, maxSessions: extra.maxSessions, certificatePublicKey: extra.certificatePublicKey });
    signers.push(s);
    return s;
  };

  beforeAll(() => {
    hsm = softHsm();
    hsm.initToken(TOKEN, PIN);
    hsm.initToken('other', PIN);
  });
  afterAll(async () => {
    for (const s of signers) await s.close();
  });

  it('generates an EC P-256 CA key in the token: sensitive, never extractable; certificates and a CRL signed there verify with openssl', async () => {
    const { certPem, keyUri } = await createDeviceCaInToken({ uri: `pkcs11:token=${TOKEN};object=device-ca`, modulePath: SOFTHSM_MODULE, pin: PIN, now: NOW });
    expect(keyUri).toMatch(/^pkcs11:token=certfleet;object=device-ca;id=(%[0-9a-f]{2}){16};type=private$/);
    expect(parsePkcs11Uri(keyUri)).toMatchObject({ token: TOKEN, object: 'device-ca' });
    expect(run('openssl', ['x509', '-noout', '-text'], certPem).out).toMatch(/CA:TRUE, pathlen:0[\s\S]*Certificate Sign, CRL Sign/);
    expect(opensslVerify(certPem, certPem, { purpose: '' }).code).toBe(0); // self-signed by the token

    // The private key's attributes, read as the token reports them.
    const m = await acquireModule(SOFTHSM_MODULE);
    try {
      const slot = m.p11.C_GetSlotList(true).find((s) => m.p11.C_GetTokenInfo(s).label.trim() === TOKEN)!;
      const session = m.p11.C_OpenSession(slot, m.lib.CKF_SERIAL_SESSION);
      m.p11.C_Login(session, m.lib.CKU_USER, PIN);
      m.p11.C_FindObjectsInit(session, [{ type: m.lib.CKA_CLASS, value: m.lib.CKO_PRIVATE_KEY }, { type: m.lib.CKA_LABEL, value: 'device-ca' }]);
      const [key] = m.p11.C_FindObjects(session, 2);
      m.p11.C_FindObjectsFinal(session);
      const [extractable, sensitive, neverExtractable] = m.p11
        .C_GetAttributeValue(session, key, [{ type: m.lib.CKA_EXTRACTABLE }, { type: m.lib.CKA_SENSITIVE }, { type: m.lib.CKA_NEVER_EXTRACTABLE }])
        .map((a) => a.value[0]);
      expect({ extractable, sensitive, neverExtractable }).toEqual({ extractable: 0, sensitive: 1, neverExtractable: 1 });
      // The value itself cannot be read.
      expect(() => m.p11.C_GetAttributeValue(session, key, [{ type: m.lib.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      m.p11.C_CloseSession(session);
    } finally {
      m.release();
    }
    // As pkcs11-tool sees it: sensitive, never extractable, and for signing only.
    const listed = hsm.tool(TOKEN, PIN, ['--list-objects', '--type', 'privkey', '--label', 'device-ca']);
    expect(listed).toMatch(/Usage:\s+sign\n\s+Access:\s+sensitive, always sensitive, never extractable, local/);

    const signer = await open(keyUri);
    expect(signer).toMatchObject({ kind: 'pkcs11', keyType: 'ec-p256', hash: 'sha256', label: keyUri });
    const ca = await deviceCaFromSigner(certPem, signer);
    const { issued, crlPem } = await issueAndRevoke(ca);
    expectOpensslAccepts(ca, issued, crlPem);
    expect(run('openssl', ['crl', '-noout', '-CAfile', join(writeTemp('ca.pem', certPem)), '-in', writeTemp('crl.pem', crlPem)]).out).toContain('verify OK');
  });

  it('an RSA-3072 key generated in the token signs with CKM_SHA256_RSA_PKCS: openssl verifies certificates and CRL', async () => {
    const { certPem, keyUri } = await createDeviceCaInToken({ uri: `pkcs11:token=${TOKEN};object=device-ca-rsa`, modulePath: SOFTHSM_MODULE, pin: PIN, keyType: 'rsa-3072', now: NOW });
    const ca = await deviceCaFromSigner(certPem, await open(keyUri));
    expect(ca.signer.keyType).toBe('rsa-3072');
    const { issued, crlPem } = await issueAndRevoke(ca);
    expectOpensslAccepts(ca, issued, crlPem);
    expect(run('openssl', ['x509', '-noout', '-text'], issued[0].certPem).out).toContain('sha256WithRSAEncryption');
  });

  it('an existing CA key imported with pkcs11-tool (no public key object in the token) signs for its certificate', async () => {
    const fileCa = await createDeviceCa({ now: NOW, commonName: 'Imported CA' });
    const keyFile = writeTemp('imported.key', fileCa.keyPem);
    hsm.tool(TOKEN, PIN, ['--write-object', keyFile, '--type', 'privkey', '--label', 'imported-ca', '--id', 'a1', '--usage-sign', '--sensitive']);
    const uri = `pkcs11:token=${TOKEN};object=imported-ca`;
    await expect(open(uri)).rejects.toThrow(/no public key for pkcs11:token=certfleet;object=imported-ca, and no CA certificate/);
    const signer = await open(uri, { certificatePublicKey: createPublicKey(fileCa.certPem) });
    const ca = await deviceCaFromSigner(fileCa.certPem, signer);
    const { issued, crlPem } = await issueAndRevoke(ca);
    expectOpensslAccepts(ca, issued, crlPem);
  });

  it('signs concurrently on a pool of 3 sessions (200 signatures), every signature valid; survives the token closing its sessions', async () => {
    const key = await generateKeyInToken({ uri: `pkcs11:token=${TOKEN};object=concurrent`, modulePath: SOFTHSM_MODULE, pin: PIN });
    const signer = await open(key.uri, { maxSessions: 3 });
    const data = Array.from({ length: 200 }, (_, i) => Buffer.from(`tbs ${i}`));
    const signatures = await Promise.all(data.map((d) => signer.sign(d)));
    signatures.forEach((sig, i) => expect(verify('sha256', data[i], { key: key.publicKey, dsaEncoding: 'der' }, sig), `signature ${i}`).toBe(true));
    // The synchronous path (the CRL builder) works while asynchronous signatures are in flight.
    const pending = Promise.all(data.slice(0, 20).map((d) => signer.sign(d)));
    expect(verify('sha256', data[0], { key: key.publicKey, dsaEncoding: 'der' }, signer.signSync(data[0]))).toBe(true);
    await pending;

    // Every session of the application closed behind the signer's back (it is logged out too): the next signatures open fresh, logged-in sessions.
    const m = await acquireModule(SOFTHSM_MODULE);
    try {
      m.p11.C_CloseAllSessions(m.p11.C_GetSlotList(true).find((s) => m.p11.C_GetTokenInfo(s).label.trim() === TOKEN)!);
    } finally {
      m.release();
    }
    const again = await Promise.all(data.slice(0, 10).map((d) => signer.sign(d)));
    again.forEach((sig, i) => expect(verify('sha256', data[i], { key: key.publicKey, dsaEncoding: 'der' }, sig)).toBe(true));
    expect(verify('sha256', data[1], { key: key.publicKey, dsaEncoding: 'der' }, signer.signSync(data[1]))).toBe(true);
  });

  it('a second key generation under a label in use is refused, and the first key stays', async () => {
    const first = await generateKeyInToken({ uri: `pkcs11:token=${TOKEN};object=once`, modulePath: SOFTHSM_MODULE, pin: PIN });
    await expect(generateKeyInToken({ uri: `pkcs11:token=${TOKEN};object=once`, modulePath: SOFTHSM_MODULE, pin: PIN })).rejects.toThrow(
      /already holds an object with this label "once".*no key is replaced/,
    );
    expect((await open(first.uri)).spkiDer.equals(first.spkiDer)).toBe(true);
  });

  describe('bad configuration: each a clear error', () => {
    let caPem: string;
    let uri: string;
    beforeAll(async () => {
      const made = await createDeviceCaInToken({ uri: `pkcs11:token=${TOKEN};object=bad-input-ca`, modulePath: SOFTHSM_MODULE, pin: PIN, now: NOW });
      caPem = made.certPem;
      uri = made.keyUri;
    });

    it('a token that does not exist', async () => {
      await expect(open('pkcs11:token=nope;object=device-ca')).rejects.toThrow(/no PKCS#11 token matches token "nope" in .*libsofthsm2.so \(tokens present: .*"certfleet"/);
    });
    it('an object that does not exist in the token', async () => {
      await expect(open(`pkcs11:token=${TOKEN};object=missing`)).rejects.toThrow(/no private key with object "missing" in the PKCS#11 token "certfleet"/);
      await expect(open('pkcs11:token=other;object=bad-input-ca')).rejects.toThrow(/no private key with object "bad-input-ca" in the PKCS#11 token "other"/);
    });
    it('a wrong PIN, while another signer of this process is logged in to the token (the PIN never appears in the message)', async () => {
      await open(uri); // logged in: C_Login now answers "already logged in" whatever the PIN
      const err = await open(uri, { pin: '999999' }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/wrong PIN for the PKCS#11 token "certfleet" \(PKCS11_PIN_FILE\)/);
      expect((err as Error).message).not.toContain('999999');
    });
    it('a module path that does not exist, and a file that is not a PKCS#11 module', async () => {
      await expect(openPkcs11Signer({ uri, modulePath: '/nonexistent/libpkcs11.so', pin: PIN })).rejects.toThrow(/PKCS11_MODULE_PATH=\/nonexistent\/libpkcs11.so does not exist/);
      const notALibrary = writeTemp('not-a-module.so', 'hello');
      await expect(openPkcs11Signer({ uri, modulePath: notALibrary, pin: PIN })).rejects.toThrow(/cannot load the PKCS#11 module PKCS11_MODULE_PATH=.*not-a-module.so/);
    });
    it('a key in the token that does not match the CA certificate', async () => {
      const otherCa = await createDeviceCa({ now: NOW, commonName: 'Another CA' });
      await expect(deviceCaFromSigner(otherCa.certPem, await open(uri))).rejects.toThrow(/the Device CA key \(pkcs11:.*\) does not match its certificate/);
      // Even when the token's public key is taken from the certificate, the test signature gives it away.
      const imported = await open(`pkcs11:token=${TOKEN};object=imported-ca`, { certificatePublicKey: createPublicKey(otherCa.certPem) });
      await expect(deviceCaFromSigner(otherCa.certPem, imported)).rejects.toThrow(/does not match its certificate: a test signature does not verify/);
      expect(caPem).toContain('BEGIN CERTIFICATE');
    });
    it('unsupported key types: EC P-521, RSA-1024, a secret key', async () => {
      hsm.tool(TOKEN, PIN, ['--keypairgen', '--key-type', 'EC:secp521r1', '--label', 'p521', '--id', 'b1']);
      await expect(open(`pkcs11:token=${TOKEN};object=p521`)).rejects.toThrow(/unsupported CA key type in token "certfleet" \(object "p521"\): EC P-521/);
      hsm.tool(TOKEN, PIN, ['--keypairgen', '--key-type', 'rsa:1024', '--label', 'rsa1024', '--id', 'b2']);
      await expect(open(`pkcs11:token=${TOKEN};object=rsa1024`)).rejects.toThrow(/RSA-1024 is too weak/);
      hsm.tool(TOKEN, PIN, ['--keygen', '--key-type', 'AES:32', '--label', 'aes', '--id', 'b3']);
      await expect(open(`pkcs11:token=${TOKEN};object=aes`)).rejects.toThrow(/unsupported CA key type .*a secret key/);
    });
    it('URIs certfleet refuses: PIN or module in the URI, no key name, no token, unknown attributes', () => {
      expect(() => parsePkcs11Uri(`${uri}?pin-value=${PIN}`)).toThrow(/PIN is never part of the URI/);
      expect(() => parsePkcs11Uri(`${uri}?module-path=/x.so`)).toThrow(/PKCS11_MODULE_PATH/);
      expect(() => parsePkcs11Uri(`pkcs11:token=${TOKEN}`)).toThrow(/must name the key/);
      expect(() => parsePkcs11Uri('pkcs11:object=device-ca')).toThrow(/must name the token/);
      expect(() => parsePkcs11Uri('pkcs11:token=a;object=b;flavour=x')).toThrow(/unsupported attribute "flavour"/);
      expect(() => parsePkcs11Uri('pkcs11:token=a;object=b;type=public')).toThrow(/names a private key/);
      expect(() => parsePkcs11Uri('/etc/ca.key')).toThrow(/not a pkcs11: URI/);
      expect(parsePkcs11Uri('pkcs11:token=my%20token;object=ca%3b1;id=%01%ff')).toEqual({ token: 'my token', object: 'ca;1', id: Buffer.from([1, 255]) });
    });
    it('a PIN file readable by others, or missing, is refused', async () => {
      await expect(readPinFile(hsm.pinFile(PIN, 0o644))).rejects.toThrow(/PKCS11_PIN_FILE.*accessible by group or others \(mode 0644\): run chmod 600/);
      await expect(readPinFile(join(hsm.dir, 'no-such-pin'))).rejects.toThrow(/PKCS11_PIN_FILE=.*does not exist/);
      expect(await readPinFile(hsm.pinFile(PIN))).toBe(PIN);
    });
  });
});


let temp: string | null = null;
function writeTemp(name: string, content: string): string {
  temp ??= softHsm().dir;
  const path = join(temp, name);
  writeFileSync(path, content);
  return path;
}

describe('PKCS#11 session pool', () => {
  it('never opens more than its size, hands a released session to the next waiter, replaces a broken one, rejects waiters on close', async () => {
    const { SessionPool } = await import('../src/pki/kms/pkcs11/session-pool.ts');
    let next = 0;
    const closed: number[] = [];
    const pool = new SessionPool<number>(2, () => ++next, (s) => closed.push(s));
    const [a, b] = [await pool.acquire(), await pool.acquire()];
    let third: number | null = null;
    const waiting = pool.acquire().then((s) => (third = s));
    await new Promise((r) => setImmediate(r));
    expect({ third, size: pool.size }).toEqual({ third: null, size: 2 });
    pool.release(a);
    expect(await waiting).toBe(a);
    const fourth = pool.acquire();
    pool.release(b, true); // broken: closed, and a fresh session goes to the waiter
    expect(await fourth).toBe(3);
    expect(closed).toEqual([b]);
    const fifth = pool.acquire();
    pool.closeIdle();
    await expect(fifth).rejects.toThrow(/closed/);
  });
});

// A file key still works through the same interface (the signer the Device CA holds by default).
describe('file key through the KeySigner interface', () => {
  it('signs like node:crypto for EC and RSA', async () => {
    const { fileKeySigner } = await import('../src/pki/kms/file-signer.ts');
    for (const key of [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey]) {
      const s = fileKeySigner(key);
      const data = Buffer.from('tbs');
      const ec = key.asymmetricKeyType === 'ec';
      for (const sig of [await s.sign(data), s.signSync(data)]) {
        expect(verify('sha256', data, ec ? { key: s.publicKey, dsaEncoding: 'der' } : s.publicKey, sig)).toBe(true);
      }
    }
    await (async () => {
      const ca = await createDeviceCa({ now: NOW });
      const { fileKeySigner: f } = await import('../src/pki/kms/file-signer.ts');
      const { createPrivateKey } = await import('node:crypto');
      expect(await createCaCertificate(f(createPrivateKey(ca.keyPem)), { now: NOW })).toContain('BEGIN CERTIFICATE');
    })();
  });
});
