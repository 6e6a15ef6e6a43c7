/**
 * CRL builder conformance: CRLs made by our pure builder are checked with real tools
 * (OpenSSL, GnuTLS certtool, Python cryptography) against CAs made by the openssl CLI,
 * plus unit tests of the DER helpers, the entries encoder and verifyCrl.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildCrl,
  createRevokedEntriesEncoder,
  encodeRevokedEntries,
  type CrlInput,
  type RevokedEntry,
} from '../src/crl/build-crl.ts';
import {
  TAG,
  children,
  contextExplicit,
  contextImplicit,
  decodeInteger,
  decodeOid,
  decodeTime,
  enumerated,
  integer,
  integerFromUnsigned,
  octetString,
  oid,
  readSingle,
  readTlv,
  sequence,
  set,
  time,
  tlv,
  utf8String,
} from '../src/domain/der.ts';
import { caIdentityFromCertificate, createCrlSigner } from '../src/pki/crl-signer.ts';
import { CrlVerificationError, crlDerToPem, crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { completeCrlOf, crlSignature } from '../src/crl/build-crl.ts';

const CRL_URL = 'http://certfleet.test:8080/pki/crl';
const DAY = 86_400_000;

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  out: string;
}

function run(cmd: string, args: string[], cwd?: string): RunResult {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, out: `${r.stdout}\n${r.stderr}` };
}

function mustRun(cmd: string, args: string[], cwd?: string): RunResult {
  const r = run(cmd, args, cwd);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.out}`);
  return r;
}

/** A CA made with the openssl CLI, with proper CA extensions. */
function makeCa(dir: string, kind: 'ec' | 'rsa', name = 'ca'): { certPem: string; keyPath: string; certPath: string } {
  const keyPath = join(dir, `${name}.key`);
  const certPath = join(dir, `${name}.pem`);
  const keyArgs = kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:2048'];
  mustRun('openssl', [
    'req', '-x509', ...keyArgs, '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '30',
    '-subj', `/C=DE/O=Certfleet Test/OU=Devices/CN=Certfleet Test ${kind.toUpperCase()} CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-addext', 'subjectKeyIdentifier=hash',
  ]);
  return { certPem: readFileSync(certPath, 'utf8'), keyPath, certPath };
}

/** A client leaf (EC P-256 key) issued by the CA with the given serial; carries our CRL DP. */
function issueLeaf(dir: string, caCert: string, caKey: string, name: string, serialHex: string, extraExt = ''): string {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const out = join(dir, `${name}.pem`);
  mustRun('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/O=Certfleet Test/CN=${name}`]);
  writeFileSync(
    ext,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      'authorityKeyIdentifier=keyid',
      `crlDistributionPoints=URI:${CRL_URL}`,
      extraExt,
    ].join('\n'),
  );
  mustRun('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', `0x${serialHex}`, '-days', '10', '-extfile', ext, '-out', out]);
  return out;
}

/** Random 16-byte serial; `highBit` forces the top bit so the INTEGER needs a leading 0x00. */
function randomSerial(highBit: boolean): string {
  const b = randomBytes(16);
  b[0] = highBit ? b[0] | 0x80 : (b[0] & 0x7f) | 0x10;
  return b.toString('hex');
}

const PY_CHECK = String.raw`
import json, sys
from cryptography import x509
crl = x509.load_der_x509_crl(open(sys.argv[1], 'rb').read())
ca = x509.load_pem_x509_certificate(open(sys.argv[2], 'rb').read())
try:
    crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    has_idp = True
except x509.ExtensionNotFound:
    has_idp = False
aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
found = {}
for s in sys.argv[3:]:
    r = crl.get_revoked_certificate_by_serial_number(int(s, 16))
    if r is None:
        found[s] = 'absent'
    else:
        try:
            found[s] = r.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
        except x509.ExtensionNotFound:
            found[s] = None
print(json.dumps({
    'signature_valid': crl.is_signature_valid(ca.public_key()),
    'crl_number': str(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number),
    'count': len(crl),
    'issuer_matches': crl.issuer == ca.subject,
    'aki': aki.value.key_identifier.hex(),
    'has_idp': has_idp,
    'next_update': crl.next_update_utc.isoformat(),
    'found': found,
}))
`;

function pythonCheck(crlDerPath: string, caPemPath: string, serials: string[]) {
  const r = mustRun('python3', ['-c', PY_CHECK, crlDerPath, caPemPath, ...serials]);
  return JSON.parse(r.stdout) as {
    signature_valid: boolean;
    crl_number: string;
    count: number;
    issuer_matches: boolean;
    aki: string;
    has_idp: boolean;
    next_update: string;
    found: Record<string, string | null>;
  };
}

/** `openssl crl -text` output split into per-entry blocks keyed by upper-case serial. */
function crlTextEntries(text: string): Map<string, string> {
  const entries = new Map<string, string>();
  const revokedPart = text.split('Revoked Certificates:')[1]?.split('Signature Algorithm:')[0] ?? '';
  for (const block of revokedPart.split('Serial Number:').slice(1)) {
    entries.set(block.trim().split(/\s/)[0], block);
  }
  return entries;
}

const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'certfleet-crl-'));
  tmpDirs.push(d);
  return d;
}

function conformanceSuite(kind: 'ec' | 'rsa', crlNumber: bigint) {
  let dir: string;
  let ca: ReturnType<typeof makeCa>;
  let identity: ReturnType<typeof caIdentityFromCertificate>;
  let input: Omit<CrlInput, 'revoked'>;
  const leaves: Record<'compromised' | 'unspecified' | 'good', { serial: string; path: string }> = {} as never;
  let crlPath: string;
  let crlDerPath: string;
  let crlDer: Buffer;
  let emptyPath: string;
  let emptyDerPath: string;
  let emptyDer: Buffer;
  const now = new Date();

  beforeAll(() => {
    dir = tempDir();
    ca = makeCa(dir, kind);
    identity = caIdentityFromCertificate(ca.certPem);
    const serials = { compromised: randomSerial(true), unspecified: randomSerial(false), good: randomSerial(false) };
    for (const name of ['compromised', 'unspecified', 'good'] as const) {
      leaves[name] = { serial: serials[name], path: issueLeaf(dir, ca.certPath, ca.keyPath, `leaf-${name}`, serials[name]) };
    }
    input = {
      issuerNameDer: identity.subjectDer,
      authorityKeyId: identity.subjectKeyId,
      thisUpdate: new Date(now.getTime() - 60_000),
      nextUpdate: new Date(now.getTime() + 7 * DAY),
      crlNumber,
      signer: createCrlSigner(createPrivateKey(readFileSync(ca.keyPath))),
    };
    // The caller sorts by serial; serial strings from openssl come upper case.
    const revoked: RevokedEntry[] = [
      { serialHex: leaves.compromised.serial.toUpperCase(), revokedAt: new Date(now.getTime() - 3_600_000), reasonCode: 1 },
      { serialHex: leaves.unspecified.serial, revokedAt: new Date(now.getTime() - 120_000), reasonCode: 0 },
    ].sort((a, b) => (BigInt('0x' + a.serialHex) < BigInt('0x' + b.serialHex) ? -1 : 1));
    crlDer = buildCrl({ ...input, revoked: encodeRevokedEntries(revoked) });
    crlPath = join(dir, 'crl.pem');
    crlDerPath = join(dir, 'crl.der');
    writeFileSync(crlPath, crlDerToPem(crlDer));
    writeFileSync(crlDerPath, crlDer);

    emptyDer = buildCrl({ ...input, crlNumber: crlNumber + 1n, revoked: encodeRevokedEntries([]) });
    emptyPath = join(dir, 'empty.pem');
    emptyDerPath = join(dir, 'empty.der');
    writeFileSync(emptyPath, crlDerToPem(emptyDer));
    writeFileSync(emptyDerPath, emptyDer);
  });

  it('reads the CA identity verbatim from the certificate', () => {
    const x = new X509Certificate(ca.certPem);
    expect(identity.publicKey.equals(x.publicKey)).toBe(true);
    const skiText = mustRun('openssl', ['x509', '-in', ca.certPath, '-noout', '-ext', 'subjectKeyIdentifier']).stdout;
    const ski = skiText.split('\n')[1].trim().replace(/:/g, '').toLowerCase();
    expect(identity.subjectKeyId.toString('hex')).toBe(ski);
    // subject bytes are verbatim: equal to the issuer field openssl wrote into a leaf
    const leafDer = new X509Certificate(readFileSync(leaves.good.path)).raw;
    const leafTbs = readTlv(leafDer, readSingle(leafDer).valueStart);
    const fields = children(leafDer, leafTbs);
    const issuerField = fields[fields[0].tag === 0xa0 ? 3 : 2];
    expect(Buffer.from(leafDer.subarray(issuerField.start, issuerField.end)).equals(identity.subjectDer)).toBe(true);
    expect(identity.subjectDer.toString('latin1')).toContain(`Certfleet Test ${kind.toUpperCase()} CA`);
  });

  it('openssl crl -verify says verify OK', () => {
    const r = run('openssl', ['crl', '-in', crlPath, '-CAfile', ca.certPath, '-noout', '-verify']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('verify OK');
  });

  it('openssl crl -text shows v2, CRL Number, AKI, no Issuing Distribution Point (a complete CRL), and reasons', () => {
    const text = mustRun('openssl', ['crl', '-in', crlPath, '-noout', '-text']).stdout;
    expect(text).toContain('Version 2 (0x1)');
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*(0x)?[0-9A-F:]+/i);
    if (crlNumber < 1000n) expect(text).toMatch(new RegExp(`X509v3 CRL Number:\\s*\\n\\s*${crlNumber}\\b`));
    expect(text).toContain('X509v3 Authority Key Identifier:');
    const akiHex = identity.subjectKeyId.toString('hex').toUpperCase().match(/../g)!.join(':');
    expect(text).toContain(akiHex);
    expect(text).not.toContain('Issuing Distribution Point');
    const entries = crlTextEntries(text);
    expect(entries.size).toBe(2);
    const compromised = entries.get(BigInt('0x' + leaves.compromised.serial).toString(16).toUpperCase());
    const unspecified = entries.get(BigInt('0x' + leaves.unspecified.serial).toString(16).toUpperCase());
    expect(compromised).toBeDefined();
    expect(unspecified).toBeDefined();
    expect(compromised).toContain('X509v3 CRL Reason Code:');
    expect(compromised).toContain('Key Compromise');
    expect(unspecified).not.toContain('Reason');
    expect(unspecified).not.toContain('CRL entry extensions');
  });

  it('GnuTLS certtool --verify-crl succeeds', () => {
    const r = run('certtool', ['--verify-crl', '--load-ca-certificate', ca.certPath, '--infile', crlPath]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/Verification output: Verified/);
  });

  it('Python cryptography parses it, the signature is valid and entries are found by serial', () => {
    const py = pythonCheck(crlDerPath, ca.certPath, [leaves.compromised.serial, leaves.unspecified.serial, leaves.good.serial]);
    expect(py.signature_valid).toBe(true);
    expect(py.crl_number).toBe(crlNumber.toString());
    expect(py.count).toBe(2);
    expect(py.issuer_matches).toBe(true);
    expect(py.aki).toBe(identity.subjectKeyId.toString('hex'));
    expect(py.has_idp).toBe(false);
    expect(py.found).toEqual({
      [leaves.compromised.serial]: 'key_compromise',
      [leaves.unspecified.serial]: null,
      [leaves.good.serial]: 'absent',
    });
  });

  it('openssl verify -crl_check rejects the revoked leaves and accepts the other', () => {
    for (const name of ['compromised', 'unspecified'] as const) {
      const r = run('openssl', ['verify', '-crl_check', '-CAfile', ca.certPath, '-CRLfile', crlPath, leaves[name].path]);
      expect(r.status, r.out).not.toBe(0);
      expect(r.out).toContain('certificate revoked');
    }
    const ok = run('openssl', ['verify', '-crl_check', '-CAfile', ca.certPath, '-CRLfile', crlPath, leaves.good.path]);
    expect(ok.status, ok.out).toBe(0);
    expect(ok.stdout).toContain(': OK');
  });

  it('covers certificates with another CRL Distribution Point or none (no "different CRL scope")', () => {
    // An Issuing Distribution Point would make OpenSSL apply the CRL only to certificates whose CRL DP
    // matches it: a certificate from before a PUBLIC_BASE_URL change or an imported one would be refused.
    const noDp = join(dir, 'leaf-no-dp.pem');
    mustRun('openssl', ['x509', '-req', '-in', join(dir, 'leaf-good.csr'), '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', '0x' + randomSerial(false), '-days', '1', '-out', noDp]);
    const otherDpConf = join(dir, 'other-dp.cnf');
    writeFileSync(otherDpConf, 'crlDistributionPoints = URI:http://old-name.example:8080/pki/crl\n');
    const otherDp = join(dir, 'leaf-other-dp.pem');
    mustRun('openssl', ['x509', '-req', '-in', join(dir, 'leaf-good.csr'), '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', '0x' + randomSerial(false), '-days', '1', '-extfile', otherDpConf, '-out', otherDp]);
    for (const leaf of [noDp, otherDp]) {
      const r = run('openssl', ['verify', '-crl_check', '-CAfile', ca.certPath, '-CRLfile', crlPath, leaf]);
      expect(r.out).not.toContain('different CRL scope');
      expect(r.status, r.out).toBe(0);
    }
  });

  it('with a distributionPointUrl: a critical Issuing Distribution Point with that URL (the CRL served at the URL)', () => {
    const scoped = join(dir, 'scoped.pem');
    writeFileSync(scoped, crlDerToPem(buildCrl({ ...input, distributionPointUrl: CRL_URL, revoked: new Uint8Array(0) })));
    const text = mustRun('openssl', ['crl', '-in', scoped, '-noout', '-text']).stdout;
    expect(text).toContain('X509v3 Issuing Distribution Point: critical');
    expect(text).toContain(`URI:${CRL_URL}`);
  });

  it('completeCrlOf: the served CRL without its IDP plus the file variant’s signature is the file variant, byte for byte', () => {
    const fields = { ...input, revoked: encodeRevokedEntries([{ serialHex: leaves.compromised.serial, revokedAt: now, reasonCode: 1 }]) };
    const served = buildCrl({ ...fields, distributionPointUrl: CRL_URL });
    const file = buildCrl(fields);
    const rebuilt = completeCrlOf(served, crlSignature(file));
    expect(rebuilt.equals(file)).toBe(true);
    expect(verifyCrl(rebuilt, { caPublicKey: identity.publicKey, now }).entryCount).toBe(1);
    expect(() => verifyCrl(completeCrlOf(served, crlSignature(served)), { caPublicKey: identity.publicKey, now })).toThrow(/signature/i);
  });

  it('verifyCrl accepts it', () => {
    const v = verifyCrl(crlDer, { caPublicKey: identity.publicKey, now, previousNumber: crlNumber - 1n, issuerNameDer: identity.subjectDer });
    expect(v.crlNumber).toBe(crlNumber);
    expect(v.entryCount).toBe(2);
    expect(v.thisUpdate.getTime()).toBe(Math.floor(input.thisUpdate.getTime() / 1000) * 1000);
    expect(v.nextUpdate.getTime()).toBe(Math.floor(input.nextUpdate.getTime() / 1000) * 1000);
  });

  describe('empty CRL', () => {
    it('omits revokedCertificates entirely', () => {
      const list = readSingle(emptyDer);
      const tbs = readTlv(emptyDer, list.valueStart, list.end);
      // version, signature, issuer, thisUpdate, nextUpdate, [0] extensions: no SEQUENCE in between
      expect(children(emptyDer, tbs).map((t) => t.tag)).toEqual([TAG.INTEGER, TAG.SEQUENCE, TAG.SEQUENCE, TAG.UTC_TIME, TAG.UTC_TIME, 0xa0]);
      expect(verifyCrl(emptyDer, { caPublicKey: identity.publicKey, now }).entryCount).toBe(0);
    });

    it('passes openssl, certtool and Python cryptography', () => {
      const v = run('openssl', ['crl', '-in', emptyPath, '-CAfile', ca.certPath, '-noout', '-verify']);
      expect(v.status, v.out).toBe(0);
      expect(v.out).toContain('verify OK');
      const text = mustRun('openssl', ['crl', '-in', emptyPath, '-noout', '-text']).stdout;
      expect(text).toContain('No Revoked Certificates');
      expect(text).toContain('Version 2 (0x1)');
      const c = run('certtool', ['--verify-crl', '--load-ca-certificate', ca.certPath, '--infile', emptyPath]);
      expect(c.status, c.out).toBe(0);
      const py = pythonCheck(emptyDerPath, ca.certPath, [leaves.compromised.serial]);
      expect(py.signature_valid).toBe(true);
      expect(py.count).toBe(0);
      expect(py.crl_number).toBe((crlNumber + 1n).toString());
      expect(py.found[leaves.compromised.serial]).toBe('absent');
      const ok = run('openssl', ['verify', '-crl_check', '-CAfile', ca.certPath, '-CRLfile', emptyPath, leaves.compromised.path]);
      expect(ok.status, ok.out).toBe(0);
    });
  });

  it('verifyCrl rejects a CRL signed by another CA', () => {
    const other = makeCa(dir, kind, 'other-ca');
    const forged = buildCrl({
      ...input,
      signer: createCrlSigner(createPrivateKey(readFileSync(other.keyPath))),
      revoked: encodeRevokedEntries([]),
    });
    expect(() => verifyCrl(forged, { caPublicKey: identity.publicKey, now })).toThrow(CrlVerificationError);
    expect(() => verifyCrl(forged, { caPublicKey: identity.publicKey, now })).toThrow(/signature/);
    const r = run('openssl', ['crl', '-in', writePem(dir, 'forged.pem', forged), '-CAfile', ca.certPath, '-noout', '-verify']);
    expect(r.out).not.toContain('verify OK');
  });
}

function writePem(dir: string, name: string, der: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, crlDerToPem(der));
  return p;
}

describe('CRL conformance, EC P-256 CA (openssl-made)', () => {
  conformanceSuite('ec', 42n);
});

describe('CRL conformance, RSA-2048 CA (openssl-made)', () => {
  // a CRL number above 2^64 exercises multi-byte INTEGERs in every tool
  conformanceSuite('rsa', (1n << 70n) + 12345n);
});

// ---------------------------------------------------------------------------

describe('caIdentityFromCertificate', () => {
  it('falls back to SHA-1 of the subjectPublicKey bits when there is no SKI (RFC 5280 method 1)', () => {
    const dir = tempDir();
    const ca = makeCa(dir, 'ec');
    const withSki = issueLeaf(dir, ca.certPath, ca.keyPath, 'with-ski', '01', 'subjectKeyIdentifier=hash');
    // same key, no SKI extension
    const ext = join(dir, 'no-ski.ext');
    writeFileSync(ext, 'basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=none\n');
    const noSki = join(dir, 'no-ski.pem');
    mustRun('openssl', ['x509', '-req', '-in', join(dir, 'with-ski.csr'), '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', '2', '-days', '1', '-extfile', ext, '-out', noSki]);
    expect(mustRun('openssl', ['x509', '-in', noSki, '-noout', '-text']).stdout).not.toContain('Subject Key Identifier');
    const a = caIdentityFromCertificate(readFileSync(withSki, 'utf8'));
    const b = caIdentityFromCertificate(readFileSync(noSki)); // DER-or-PEM bytes path: PEM file bytes
    expect(b.subjectKeyId.toString('hex')).toBe(a.subjectKeyId.toString('hex'));
    const der = new X509Certificate(readFileSync(noSki)).raw;
    expect(caIdentityFromCertificate(der).subjectKeyId.equals(a.subjectKeyId)).toBe(true);
  });

  it('rejects garbage', () => {
    expect(() => caIdentityFromCertificate('not a cert')).toThrow();
    expect(() => caIdentityFromCertificate(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]))).toThrow(/CA certificate/);
  });
});

// ---------------------------------------------------------------------------

describe('DER helpers', () => {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  it('encodes INTEGERs minimally (two’s complement)', () => {
    expect(hex(integer(0n))).toBe('020100');
    expect(hex(integer(127n))).toBe('02017f');
    expect(hex(integer(128n))).toBe('02020080');
    expect(hex(integer(256n))).toBe('02020100');
    expect(hex(integer(-1n))).toBe('0201ff');
    expect(hex(integer(-128n))).toBe('020180');
    expect(hex(integer(-129n))).toBe('0202ff7f');
    expect(hex(integerFromUnsigned(Uint8Array.of(0, 0, 0x80)))).toBe('02020080');
    expect(hex(integerFromUnsigned(Uint8Array.of(0, 0, 1)))).toBe('020101');
    expect(hex(integerFromUnsigned(Uint8Array.of(0xff, 0x01)))).toBe('020300ff01');
    expect(hex(integerFromUnsigned(new Uint8Array(0)))).toBe('020100');
    for (const n of [0n, 1n, -1n, 127n, 128n, -128n, -129n, 1n << 159n, -(1n << 64n)]) {
      const d = integer(n);
      expect(decodeInteger(d, readSingle(d))).toBe(n);
    }
  });

  it('encodes OIDs, lengths, tags', () => {
    expect(hex(oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
    expect(hex(oid('2.5.29.20'))).toBe('0603551d14');
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302');
    for (const o of ['2.5.29.28', '1.3.6.1.5.5.7.1.1', '2.999.3']) {
      const d = oid(o);
      expect(decodeOid(d, readSingle(d))).toBe(o);
    }
    expect(hex(tlv(0x04, new Uint8Array(127))).slice(0, 4)).toBe('047f');
    expect(hex(tlv(0x04, new Uint8Array(200))).slice(0, 6)).toBe('0481c8');
    expect(hex(tlv(0x04, new Uint8Array(256))).slice(0, 8)).toBe('04820100');
    expect(hex(tlv(0x04, new Uint8Array(70000))).slice(0, 10)).toBe('0483011170');
    expect(hex(contextExplicit(0, integer(1)))).toBe('a003020101');
    expect(hex(contextImplicit(6, Buffer.from('a')))).toBe('860161');
    expect(hex(contextImplicit(0, Buffer.from([1]), true))).toBe('a00101');
    expect(hex(enumerated(1))).toBe('0a0101');
    expect(hex(set(utf8String('x')))).toBe('31030c0178');
  });

  it('uses UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280)', () => {
    const cases: [string, string][] = [
      ['2049-12-31T23:59:59.999Z', '170d3439313233313233353935395a'],
      ['2050-01-01T00:00:00Z', '180f32303530303130313030303030305a'],
      ['1950-01-01T00:00:00Z', '170d3530303130313030303030305a'],
      ['1949-12-31T23:59:59Z', '180f31393439313233313233353935395a'],
    ];
    for (const [iso, expected] of cases) {
      const d = time(new Date(iso));
      expect(hex(d)).toBe(expected);
      expect(decodeTime(d, readSingle(d)).getTime()).toBe(Math.floor(new Date(iso).getTime() / 1000) * 1000);
    }
  });

  it('the reader rejects non-DER and truncated input', () => {
    expect(() => readSingle(Uint8Array.of(0x04, 0x81, 0x05, 1, 2, 3, 4, 5))).toThrow(/non-minimal/);
    expect(() => readSingle(Uint8Array.of(0x30, 0x80, 0, 0))).toThrow(/indefinite/);
    expect(() => readSingle(Uint8Array.of(0x04, 0x05, 1))).toThrow(/overruns/);
    expect(() => readSingle(Uint8Array.of(0x04, 0x01, 1, 0))).toThrow(/trailing/);
    expect(() => decodeInteger(Uint8Array.of(2, 2, 0, 1), readSingle(Uint8Array.of(2, 2, 0, 1)))).toThrow(/non-minimal/);
  });
});

// ---------------------------------------------------------------------------

/** The slow, obviously-right encoding of one entry, built from the DER helpers. */
function referenceEntry(e: RevokedEntry): Buffer {
  const serial = integerFromUnsigned(Buffer.from(e.serialHex.length % 2 ? '0' + e.serialHex : e.serialHex, 'hex'));
  const parts = [serial, time(e.revokedAt)];
  if (e.reasonCode !== 0) parts.push(sequence(sequence(oid('2.5.29.21'), octetString(enumerated(e.reasonCode)))));
  return sequence(...parts);
}

describe('revoked entries encoder', () => {
  it('matches the reference encoding byte for byte (random serials, dates 1900-2150, all reasons)', () => {
    const reasons = [0, 1, 2, 3, 4, 5, 6, 9, 10];
    let serial = 1n;
    const entries: RevokedEntry[] = [];
    for (let i = 0; i < 3000; i++) {
      serial += BigInt('0x' + randomBytes(1 + (i % 15)).toString('hex')) + 1n;
      let serialHex = serial.toString(16);
      if (i % 7 === 0) serialHex = serialHex.toUpperCase();
      if (i % 11 === 0) serialHex = '00' + serialHex;
      const ms = Date.UTC(1900, 0, 1) + Math.floor(Math.random() * 250 * 365.25 * DAY);
      // runs of equal seconds exercise the time cache
      const revokedAt = new Date(i % 3 === 0 && entries.length ? entries[entries.length - 1].revokedAt.getTime() + 400 : ms);
      entries.push({ serialHex, revokedAt, reasonCode: reasons[i % reasons.length] });
    }
    const enc = createRevokedEntriesEncoder();
    for (const e of [...entries].reverse()) enc.add(e);
    expect(enc.count).toBe(entries.length);
    const expected = Buffer.concat(entries.map((e) => referenceEntry({ ...e, serialHex: e.serialHex.replace(/^0+(?=.)/, '') })));
    expect(enc.byteLength).toBe(expected.length);
    expect(enc.finish().equals(expected)).toBe(true);
  });

  it('handles leap days and the top-bit serial', () => {
    const e = { serialHex: 'ff', revokedAt: new Date('2024-02-29T23:59:59Z'), reasonCode: 4 };
    expect(encodeRevokedEntries([e]).equals(referenceEntry(e))).toBe(true);
    expect(encodeRevokedEntries([e]).subarray(2, 6).toString('hex')).toBe('020200ff');
  });

  it('puts entries added in any order in serial order, and refuses a serial added twice', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const enc = createRevokedEntriesEncoder();
    enc.add({ serialHex: '100', revokedAt: at, reasonCode: 1 });
    enc.add({ serialHex: '0b', revokedAt: at, reasonCode: 0 });
    enc.add({ serialHex: '0a', revokedAt: at, reasonCode: 0 });
    expect(() => enc.add({ serialHex: 'ff', revokedAt: at, reasonCode: 7 })).toThrow(/reason/);
    expect(() => enc.add({ serialHex: 'ff', revokedAt: at, reasonCode: 8 })).toThrow(/reason/);
    expect(() => enc.add({ serialHex: 'fg', revokedAt: at, reasonCode: 0 })).toThrow(/hexadecimal/);
    expect(() => enc.add({ serialHex: 'ff', revokedAt: new Date('x'), reasonCode: 0 })).toThrow(/Date/);
    expect(() => enc.add({ serialHex: '1'.repeat(41), revokedAt: at, reasonCode: 0 })).toThrow(/20 octets/);
    expect(enc.count).toBe(3);
    const out = enc.finish();
    expect(out.equals(Buffer.concat([referenceEntry({ serialHex: 'a', revokedAt: at, reasonCode: 0 }), referenceEntry({ serialHex: 'b', revokedAt: at, reasonCode: 0 }), referenceEntry({ serialHex: '100', revokedAt: at, reasonCode: 1 })]))).toBe(true);
    expect(() => enc.add({ serialHex: '200', revokedAt: at, reasonCode: 0 })).toThrow(/finished/);

    const twice = createRevokedEntriesEncoder();
    for (const serialHex of ['0a', '7f', '0A']) twice.add({ serialHex, revokedAt: at, reasonCode: 0 });
    expect(() => twice.finish()).toThrow(/0a is revoked twice/);
    const twiceLong = createRevokedEntriesEncoder();
    const long = '4' + 'c'.repeat(39);
    for (const serialHex of [long, '4' + 'c'.repeat(38) + 'd', long.toUpperCase()]) twiceLong.add({ serialHex, revokedAt: at, reasonCode: 0 });
    expect(() => twiceLong.finish()).toThrow(/revoked twice/);
  });

  it('orders shuffled serials of every length like a numeric sort: shared prefixes, top bits, leading zeros, 1 and 20 octets', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const values = new Set<bigint>();
    const add = (v: bigint) => v > 0n && v < 1n << 160n && values.add(v);
    for (let i = 0; i < 2000; i++) add(BigInt('0x' + randomBytes(1 + (i % 20)).toString('hex')));
    for (let i = 0; i < 300; i++) add((0x4abcdef012345n << 100n) + BigInt(i) * 7n); // equal leading bits: ordered byte by byte
    for (let i = 1; i < 300; i++) add(BigInt(i)); // small serials, one and two octets
    for (let i = 0; i < 50; i++) add((1n << 159n) + BigInt(i)); // top bit set: a 0x00 sign octet, 21 octets of content
    const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const shuffled = [...sorted].sort(() => Math.random() - 0.5);
    const enc = createRevokedEntriesEncoder();
    shuffled.forEach((v, i) => enc.add({ serialHex: (i % 5 === 0 ? '000' : '') + v.toString(16), revokedAt: at, reasonCode: i % 2 }));
    const reasonOf = new Map(shuffled.map((v, i) => [v, i % 2]));
    const expected = Buffer.concat(sorted.map((v) => referenceEntry({ serialHex: v.toString(16), revokedAt: at, reasonCode: reasonOf.get(v)! })));
    expect(enc.finish().equals(expected)).toBe(true);
  });

  it('orders entries alike with few buckets (their ids sorted) or many (every slot walked); encoders reuse emptied bucket tables', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const values = new Set<bigint>();
    // Random lengths and first octets: thousands of buckets (length and first 12 bits), so every slot is walked.
    while (values.size < 6000) values.add(BigInt('0x' + randomBytes(2 + (values.size % 19)).toString('hex')) || 1n);
    const byValue = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
    const encode = (list: bigint[]) => {
      const enc = createRevokedEntriesEncoder();
      for (const v of list) enc.add({ serialHex: v.toString(16), revokedAt: at, reasonCode: 1 });
      return enc.finish();
    };
    const expected = (list: bigint[]) => Buffer.concat([...list].sort(byValue).map((v) => referenceEntry({ serialHex: v.toString(16), revokedAt: at, reasonCode: 1 })));
    const all = [...values];
    for (let round = 0; round < 3; round++) {
      expect(encode(all).equals(expected(all))).toBe(true); // thousands of buckets: every slot walked
      const few = all.slice(round * 50, round * 50 + 40);
      expect(encode(few).equals(expected(few))).toBe(true); // a few buckets: their ids sorted
      // A finish that throws keeps its table out of reuse; the next encoders are not disturbed.
      const twice = createRevokedEntriesEncoder();
      for (const v of [all[0], all[1], all[0]]) twice.add({ serialHex: v.toString(16), revokedAt: at, reasonCode: 0 });
      expect(() => twice.finish()).toThrow(/revoked twice/);
    }
  });
});

// ---------------------------------------------------------------------------

describe('verifyCrl and buildCrl with node-generated keys', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const issuerNameDer = sequence(set(sequence(oid('2.5.4.3'), utf8String('Unit Test CA'))));
  const base = {
    issuerNameDer,
    authorityKeyId: Buffer.alloc(20, 7),
    thisUpdate: new Date('2026-03-01T10:00:00Z'),
    nextUpdate: new Date('2026-03-08T10:00:00Z'),
    crlNumber: 10n,
    signer: createCrlSigner(ec.privateKey),
  };
  const now = new Date('2026-03-02T00:00:00Z');
  const der = buildCrl({ ...base, revoked: encodeRevokedEntries([{ serialHex: '01', revokedAt: now, reasonCode: 1 }]) });

  it('accepts a good CRL', () => {
    expect(verifyCrl(der, { caPublicKey: ec.publicKey, now, previousNumber: 9n, issuerNameDer })).toEqual({
      crlNumber: 10n,
      thisUpdate: base.thisUpdate,
      nextUpdate: base.nextUpdate,
      entryCount: 1,
    });
  });

  it('rejects a flipped signature byte', () => {
    const bad = Buffer.from(der);
    bad[bad.length - 1] ^= 0x01;
    expect(() => verifyCrl(bad, { caPublicKey: ec.publicKey, now })).toThrow(CrlVerificationError);
    try {
      verifyCrl(bad, { caPublicKey: ec.publicKey, now });
    } catch (e) {
      expect((e as CrlVerificationError).code).toBe('BAD_SIGNATURE');
    }
  });

  it('rejects a flipped TBS byte (the issuer name)', () => {
    const bad = Buffer.from(der);
    const at = bad.indexOf(Buffer.from('Unit Test CA'));
    bad[at] ^= 0x20;
    expect(() => verifyCrl(bad, { caPublicKey: ec.publicKey, now })).toThrow(/signature/);
  });

  it('rejects nextUpdate in the past', () => {
    expect(() => verifyCrl(der, { caPublicKey: ec.publicKey, now: new Date('2026-03-08T10:00:00Z') })).toThrow(/nextUpdate/);
  });

  it('rejects a CRL number not greater than the previous', () => {
    expect(() => verifyCrl(der, { caPublicKey: ec.publicKey, now, previousNumber: 10n })).toThrow(/not greater/);
    expect(() => verifyCrl(der, { caPublicKey: ec.publicKey, now, previousNumber: 11n })).toThrow(CrlVerificationError);
  });

  it('rejects another key, another key type, another issuer, truncation', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => verifyCrl(der, { caPublicKey: other.publicKey, now })).toThrow(/signature/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(() => verifyCrl(der, { caPublicKey: rsa.publicKey, now })).toThrow(/CA key is rsa/);
    expect(() => verifyCrl(der, { caPublicKey: ec.publicKey, now, issuerNameDer: sequence() })).toThrow(/issuer/);
    expect(() => verifyCrl(der.subarray(0, der.length - 3), { caPublicKey: ec.publicKey, now })).toThrow(CrlVerificationError);
  });

  it('signs with P-384 (ecdsa-with-SHA384) and RSA (sha256WithRSAEncryption, NULL params)', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const s384 = createCrlSigner(p384.privateKey);
    expect(Buffer.from(s384.algorithmIdentifierDer).toString('hex')).toBe('300a06082a8648ce3d040303');
    const d384 = buildCrl({ ...base, signer: s384, revoked: new Uint8Array(0) });
    expect(verifyCrl(d384, { caPublicKey: p384.publicKey, now }).crlNumber).toBe(10n);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sRsa = createCrlSigner(rsa.privateKey);
    expect(Buffer.from(sRsa.algorithmIdentifierDer).toString('hex')).toBe('300d06092a864886f70d01010b0500');
    expect(verifyCrl(buildCrl({ ...base, signer: sRsa, revoked: new Uint8Array(0) }), { caPublicKey: rsa.publicKey, now }).entryCount).toBe(0);
    expect(() => createCrlSigner(generateKeyPairSync('ed25519').privateKey)).toThrow(/unsupported/);
    expect(() => createCrlSigner(ec.publicKey)).toThrow(/private/);
  });

  it('encodes a 2050 nextUpdate as GeneralizedTime that openssl and cryptography read', () => {
    const d = buildCrl({ ...base, nextUpdate: new Date('2050-06-01T00:00:00Z'), revoked: new Uint8Array(0) });
    const list = readSingle(d);
    const tbs = readTlv(d, list.valueStart, list.end);
    expect(children(d, tbs)[4].tag).toBe(TAG.GENERALIZED_TIME);
    const dir = tempDir();
    const text = mustRun('openssl', ['crl', '-in', writePem(dir, 'g.pem', d), '-noout', '-nextupdate']).stdout;
    expect(text).toContain('Jun  1 00:00:00 2050 GMT');
    expect(verifyCrl(d, { caPublicKey: ec.publicKey, now }).nextUpdate.toISOString()).toBe('2050-06-01T00:00:00.000Z');
  });

  it('rejects bad builder inputs', () => {
    const revoked = new Uint8Array(0);
    expect(() => buildCrl({ ...base, revoked, nextUpdate: base.thisUpdate })).toThrow(/nextUpdate/);
    expect(() => buildCrl({ ...base, revoked, crlNumber: -1n })).toThrow(/crlNumber/);
    expect(() => buildCrl({ ...base, revoked, crlNumber: 1n << 160n })).toThrow(/20 octets/);
    expect(() => buildCrl({ ...base, revoked, distributionPointUrl: 'not a url' })).toThrow(/URI/);
    expect(() => buildCrl({ ...base, revoked, issuerNameDer: Uint8Array.of(0x30, 0x05) })).toThrow(/issuerNameDer/);
    expect(() => buildCrl({ ...base, revoked, authorityKeyId: new Uint8Array(0) })).toThrow(/authorityKeyId/);
  });

  it('PEM uses the X509 CRL label with 64-character lines and round-trips', () => {
    const pem = crlDerToPem(der);
    expect(pem.startsWith('-----BEGIN X509 CRL-----\n')).toBe(true);
    expect(pem.endsWith('-----END X509 CRL-----\n')).toBe(true);
    const body = pem.split('\n').slice(1, -2);
    expect(body.slice(0, -1).every((l) => l.length === 64)).toBe(true);
    expect(body[body.length - 1].length).toBeLessThanOrEqual(64);
    expect(crlPemToDer(pem).equals(der)).toBe(true);
    expect(() => crlPemToDer(pem.replace(/X509 CRL/g, 'CRL'))).toThrow(/X509 CRL/);
  });

  // 20k entries (100k until issue 23): the list's DER length takes three octets either way, as up to
  // 16 MB; bench/crl-build.bench.ts builds 100k and 1M.
  it('encodes and verifies 20k entries (count walked from TLVs)', () => {
    const enc = createRevokedEntriesEncoder();
    const start = Date.UTC(2026, 0, 1);
    const prefix = randomBytes(6).toString('hex').replace(/^0/, '7');
    for (let i = 0; i < 20_000; i++) {
      enc.add({ serialHex: prefix + i.toString(16).padStart(10, '0'), revokedAt: new Date(start + i * 997), reasonCode: i % 4 === 0 ? 1 : 0 });
    }
    expect(enc.count).toBe(20_000);
    const big = buildCrl({ ...base, revoked: enc.finish() });
    expect(big.length).toBeGreaterThan(0x10000); // past two-octet lengths
    const v = verifyCrl(big, { caPublicKey: ec.publicKey, now });
    expect(v.entryCount).toBe(20_000);
    const dir = tempDir();
    const r = run('openssl', ['crl', '-in', writePem(dir, 'big.pem', big), '-noout', '-text']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('Serial Number:').length - 1).toBe(20_000);
  });
});
