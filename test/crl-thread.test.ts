/**
 * The CRL thread (src/support/crl-thread.ts): a large CRL's signature checked and part of its PEM
 * encoded in a worker over shared memory. The PEM is byte for byte the one made on the main
 * thread; a bad signature or a changed byte fails the check; inputs not in shared memory stay on
 * the old paths.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { pemBytes, pemBytesSplit } from '../src/pki/pem.ts';
import { CrlVerificationError, crlDerToPemBytes, crlDerToPemBytesAsync, crlPemByteLength, verifyCrlAsync } from '../src/crl/verify-crl.ts';
import { buildCrl, encodeRevokedEntries } from '../src/crl/build-crl.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';
import { CRL_THREAD_MIN_BYTES, pemLinesInCrlThread, shared, sharedBuffer, stopCrlThread, verifyInCrlThread } from '../src/support/crl-thread.ts';

describe('CRL thread', () => {
  afterAll(() => stopCrlThread());

  it('PEM split between this thread and the CRL thread: the same bytes as pemBytes, every tail length', async () => {
    for (const n of [0, 1, 47, 48, 49, 96 * 7 + 5, 4800, 4801, 4847]) {
      const der = sharedBuffer(n + 16).subarray(7, 7 + n);
      randomBytes(n).copy(der);
      const out = sharedBuffer(crlPemByteLength(n) + 64);
      for (const share of [0, 1 / 3, 1]) {
        const split = await pemBytesSplit('X509 CRL', der, out, share, (part, at) => pemLinesInCrlThread(part, out, at));
        expect(split.equals(pemBytes('X509 CRL', der)), `${n} bytes, share ${share}`).toBe(true);
      }
    }
  });

  it('a large CRL in shared memory: crlDerToPemBytesAsync equals crlDerToPemBytes', async () => {
    const n = CRL_THREAD_MIN_BYTES + 1234;
    const der = sharedBuffer(n);
    randomBytes(n).copy(der);
    const out = sharedBuffer(crlPemByteLength(n));
    const pem = await crlDerToPemBytesAsync(der, out);
    expect(shared(pem)).toBe(true);
    expect(pem.equals(crlDerToPemBytes(Buffer.from(der)))).toBe(true);
  });

  it('verifies a signature over shared memory; a wrong signature or a changed byte fails; unshared input is refused', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const data = sharedBuffer(1 << 16);
    randomBytes(data.length).copy(data);
    const signature = sign('sha256', data, { key: privateKey, dsaEncoding: 'der' });
    expect(await verifyInCrlThread('sha256', data.subarray(0, data.length), publicKey, signature)).toBe(true);
    data[100] ^= 1;
    expect(await verifyInCrlThread('sha256', data, publicKey, signature)).toBe(false);
    data[100] ^= 1;
    expect(await verifyInCrlThread('sha256', data.subarray(1), publicKey, signature)).toBe(false);
    await expect(verifyInCrlThread('sha256', Buffer.from(data), publicKey, signature)).rejects.toThrow(/shared memory/);
  });

  it('verifyCrlAsync of a CRL in shared memory (the buffers of the file variant): the CRL thread accepts a good one and refuses a wrong key or a changed byte', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = new Date();
    const revoked = encodeRevokedEntries(Array.from({ length: 500 }, (_, i) => ({ serialHex: (0x1000 + i).toString(16), revokedAt: new Date(now.getTime() - 60_000), reasonCode: 1 })));
    const built = buildCrl({
      issuerNameDer: Buffer.from('3011310f300d06035504030c06746573746361', 'hex'),
      authorityKeyId: randomBytes(20),
      thisUpdate: new Date(now.getTime() - 1_000),
      nextUpdate: new Date(now.getTime() + 86_400_000),
      crlNumber: 9n,
      revoked,
      signer: createCrlSigner(privateKey),
    });
    const der = sharedBuffer(built.length + 5).subarray(5);
    built.copy(der);
    const options = { caPublicKey: publicKey, now, crlThreadMinBytes: 0 };
    expect(await verifyCrlAsync(der, options)).toMatchObject({ crlNumber: 9n, entryCount: 500 });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    await expect(verifyCrlAsync(der, { ...options, caPublicKey: other })).rejects.toBeInstanceOf(CrlVerificationError);
    // A byte of an entry's serial (the structure stays valid): only the signature check can see it.
    const at = der.indexOf(Buffer.from([0x02, 0x02, 0x10, 0x05]));
    expect(at).toBeGreaterThan(0);
    der[at + 3] = 0x06 ^ 0xff;
    await expect(verifyCrlAsync(der, options)).rejects.toThrow(/signature/);
  });
});
