/**
 * Where an EC P-256 issuance's CPU goes inside the API process, stage by stage, in this process
 * (no HTTP, no database): each stage run N times and timed by process.cpuUsage (user + system, so
 * a loaded machine's waiting is not counted), in alternating rounds (median of the rounds), the
 * replaced way beside the current one in the same rounds. The rest of the API process's CPU per
 * certificate (issuance.bench.ts's split) is HTTP (Fastify, the JSON body and answer, sockets), the
 * group commit's client side (pg), and the event loop.
 *
 *   node --import tsx bench/issuance-components.ts [certificates per round] [rounds]
 */
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { loadavg } from 'node:os';
import { deviceProfile, encodeDeviceTbs, signedEnvelope } from '../src/domain/certificate-der.ts';
import { p256Pkcs8Der, p256SpkiDer } from '../src/domain/ec-key-der.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { caIdentityFromCertificate } from '../src/pki/crl-signer.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { keySource } from '../src/pki/key-source.ts';
import { generateDeviceKey, p256KeyParts, spkiOf } from '../src/pki/keys.ts';
import { caLintProfile } from '../src/pki/lint/ca-profile.ts';
import { createIssuedTbsLint } from '../src/pki/lint/issued-tbs-lint.ts';
import { checkSignedCertificate } from '../src/pki/lint/signed-certificate-check.ts';
import { toPem } from '../src/pki/pem.ts';
import { randomSerialHex } from '../src/pki/serial-number.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const N = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 5);
const DAY = 86_400_000;
const now = new Date();

const created = await createDeviceCa({ now: new Date(now.getTime() - DAY), keyType: 'ec-p256' });
const ca = await deviceCaFromPem(created.certPem, created.keyPem);
const identity = caIdentityFromCertificate(ca.certDer);
const profile = deviceProfile({ issuerNameDer: identity.subjectDer, authorityKeyId: identity.subjectKeyId, crlDistributionPointUrl: 'http://certfleet.test/pki/crl', signatureAlgorithmDer: ca.signer.algorithmIdentifierDer });
const lint = createIssuedTbsLint({ ca: caLintProfile(ca.certDer), fullLint: async () => undefined });
const authority = createCertificateAuthority(ca, { crlUrl: 'http://certfleet.test/pki/crl' });

// Fixed inputs, so each stage is timed alone.
const device = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const spki = spkiOf(device.publicKey);
const input = () => ({ serial: Buffer.from(randomSerialHex(), 'hex'), commonName: 'bench/BENCH-1', notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY), subjectPublicKeyInfoDer: spki, subjectKeyId: createHash('sha1').update(spki).digest() });
const tbs = encodeDeviceTbs(profile, input());
await lint.lint(tbs, { commonName: 'bench/BENCH-1', spkiDer: spki }); // the shape learnt
const der = signedEnvelope(tbs, profile.signatureAlgorithmDer, await ca.signer.sign(tbs));
const csrDir = mkdtempSync(join(tmpdir(), 'certfleet-components-'));
execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(csrDir, 'k'), '-subj', '/CN=d', '-out', join(csrDir, 'c')], { stdio: 'pipe' });
const csrPem = readFileSync(join(csrDir, 'c'), 'utf8');

type Stage = [name: string, run: () => unknown | Promise<unknown>];
const stages: Stage[] = [
  ['key generation, before: generateKeyPairSync + JWK export + DER/PEM', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = privateKey.export({ format: 'jwk' });
    const [d, x, y] = [jwk.d, jwk.x, jwk.y].map((v) => Buffer.from(v!, 'base64url')) as [Buffer, Buffer, Buffer];
    return [p256SpkiDer(x, y), toPem('PRIVATE KEY', p256Pkcs8Der(d, x, y))];
  }],
  ['key generation, after: ECDH handle + DER/PEM', () => generateDeviceKey('ec-p256')],
  ['key generation, raw (ECDH generateKeys only)', () => p256KeyParts()],
  ['serial + SKI + SPKI SHA-256', () => [randomSerialHex(), createHash('sha1').update(spki).digest(), createHash('sha256').update(spki).digest('hex')]],
  ['TBS encoding (encodeDeviceTbs)', () => encodeDeviceTbs(profile, input())],
  ['lint of the TBS (varying fields; shape known)', () => lint.lint(tbs, { commonName: 'bench/BENCH-1', spkiDer: spki })],
  ['CA signature (ECDSA P-256, inline)', () => ca.signer.sign(tbs)],
  ['check after signing, before: X509Certificate parse + verify', () => new X509Certificate(der).verify(ca.publicKey)],
  ['check after signing, after: envelope read back + node:crypto verify', () => checkSignedCertificate(der, { tbs, signatureAlgorithmDer: profile.signatureAlgorithmDer, hash: ca.signer.hash, caPublicKey: ca.publicKey })],
  ['PEM + fingerprint of the certificate', () => [toPem('CERTIFICATE', der), createHash('sha256').update(der).digest('hex')]],
  ['authority.issue as a whole (after; key given)', () => authority.issue({ tenantId: 'bench', commonName: 'bench/BENCH-1', publicKey: { spkiDer: spki, keyType: 'ec-p256' }, notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY) })],
  ['CSR check (after: canonical P-256 SPKI from the CSR bytes)', () => keySource.publicKeyFromCsr(csrPem)],
  ['CSR key export the CSR check no longer makes (spkiOf)', () => spkiOf(device.publicKey)],
];

const results = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of stages) {
    for (let i = 0; i < 50; i++) await run(); // warm
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) await run();
    const d = process.cpuUsage(t0);
    results.set(name, [...(results.get(name) ?? []), (d.user + d.system) / N]);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
console.log(`\nEC P-256 issuance stages, CPU µs per certificate (median of ${ROUNDS} rounds of ${N}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
for (const [name] of stages) console.log(`${median(results.get(name)!).toFixed(1).padStart(8)}  ${name}`);
