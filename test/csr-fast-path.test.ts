/**
 * CSR keys (src/pki/key-source.ts): the common CSR (ECDSA or RSA with SHA-2) is checked with
 * Node's crypto alone, accept-only; anything it does not accept (a signature that does not
 * verify, a weak key, another algorithm) goes through the @peculiar/x509 path, which names the
 * error as before.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keySource } from '../src/pki/key-source.ts';
import { P256_SPKI_PREFIX, p256PublicKeyFromSpki, spkiOf } from '../src/pki/keys.ts';
import { run } from './support/openssl.ts';

function csrFor(keyPem: string, extra: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-csr-'));
  writeFileSync(join(dir, 'key.pem'), keyPem);
  const r = run('openssl', ['req', '-new', '-key', join(dir, 'key.pem'), '-subj', '/CN=device', ...extra]);
  expect(r.code).toBe(0);
  return r.out.slice(r.out.indexOf('-----BEGIN CERTIFICATE REQUEST'));
}

describe('CSR keys', () => {
  it.each([
    ['EC P-256, SHA-256', 'ec', [] as string[]],
    ['EC P-384, SHA-384', 'ec384', ['-sha384']],
    ['RSA-2048, SHA-256', 'rsa', []],
    ['RSA-2048, RSA-PSS (the @peculiar/x509 path)', 'rsa', ['-sigopt', 'rsa_padding_mode:pss']],
  ])('%s: the key is the CSR’s', async (_what, kind, extra) => {
    const pair =
      kind === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: kind === 'ec384' ? 'P-384' : 'P-256' });
    const key = await keySource.publicKeyFromCsr(csrFor(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, extra));
    expect(Buffer.from(key.spkiDer).equals(spkiOf(pair.publicKey))).toBe(true);
  });

  it('a P-256 key: the CSR’s own bytes when they are the canonical form, OpenSSL’s export of the key when not (a compressed point)', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const canonical = await keySource.publicKeyFromCsr(csrFor(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string));
    expect(canonical.keyType).toBe('ec-p256');
    expect(Buffer.from(canonical.spkiDer).equals(spkiOf(pair.publicKey))).toBe(true);

    const compressedKey = run('openssl', ['ec', '-conv_form', 'compressed'], pair.privateKey.export({ type: 'sec1', format: 'pem' }) as string);
    expect(compressedKey.code).toBe(0);
    const csr = csrFor(compressedKey.out.slice(compressedKey.out.indexOf('-----BEGIN')));
    const csrDer = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    expect(csrDer.includes(spkiOf(pair.publicKey))).toBe(false); // the CSR carries the compressed point
    const fromCompressed = await keySource.publicKeyFromCsr(csr);
    expect(fromCompressed.keyType).toBe('ec-p256');
    // OpenSSL's export, as before the canonical-bytes shortcut (OpenSSL 3 keeps the key's point form).
    const exported = spkiOf(createPublicKey(compressedKey.out.slice(compressedKey.out.indexOf('-----BEGIN'))));
    expect(Buffer.from(fromCompressed.spkiDer).equals(exported)).toBe(true);
    expect(exported.length).toBeLessThan(spkiOf(pair.publicKey).length);
  });

  it('a P-256 key through the raw import: the same key; a point off the curve, a coordinate not below p, another SPKI: never a key', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = spkiOf(pair.publicKey);
    const key = await p256PublicKeyFromSpki(spki);
    expect(key?.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(spkiOf(key!).equals(spki)).toBe(true);
    const offCurve = Buffer.from(spki);
    offCurve[offCurve.length - 1]! ^= 1;
    await expect(p256PublicKeyFromSpki(offCurve)).rejects.toThrow();
    const p = Buffer.from('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff', 'hex');
    await expect(p256PublicKeyFromSpki(Buffer.concat([P256_SPKI_PREFIX, p, spki.subarray(P256_SPKI_PREFIX.length + 32)]))).rejects.toThrow();
    expect(await p256PublicKeyFromSpki(spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey))).toBeNull();
  });

  it('a CSR whose P-256 point is off the curve: refused (WEAK_KEY), never a key', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = csrFor(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const spki = spkiOf(pair.publicKey);
    const at = der.indexOf(spki);
    expect(at).toBeGreaterThan(0);
    der[at + spki.length - 1]! ^= 1; // the last byte of y
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(keySource.publicKeyFromCsr(tampered)).rejects.toMatchObject({ code: 'WEAK_KEY' });
  });

  it('a signature that does not verify: INVALID_CSR (proof of possession failed)', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = csrFor(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
    der[der.length - 5] ^= 0x01; // inside the signature value
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(keySource.publicKeyFromCsr(tampered)).rejects.toMatchObject({ code: 'INVALID_CSR' });
  });

  it('an EC key on another curve: WEAK_KEY, named as before', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    await expect(keySource.publicKeyFromCsr(csrFor(pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string))).rejects.toMatchObject({ code: 'WEAK_KEY' });
  });
});
