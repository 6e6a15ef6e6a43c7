/**
 * The one PEM encoder (src/pki/pem.ts) against the plainest possible reference: base64 of the
 * whole input cut into 64-character lines (RFC 7468), at every size where its block-wise,
 * in-place line spreading could go wrong.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PemError, pemBlocks, pemByteLength, pemBytes, toPem } from '../src/pki/pem.ts';

const reference = (label: string, der: Uint8Array) =>
  `-----BEGIN ${label}-----\n${(Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? []).map((line) => `${line}\n`).join('')}-----END ${label}-----\n`;

const BLOCK = 48 * 16_384;

describe('PEM encoder', () => {
  it('matches the reference around line and block boundaries', () => {
    for (const n of [0, 1, 2, 3, 47, 48, 49, 95, 96, 97, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 50, 1_000_003]) {
      const der = randomBytes(n);
      expect(pemBytes('X509 CRL', der).toString('latin1'), `${n} bytes`).toBe(reference('X509 CRL', der));
    }
  });

  it('writes into a kept buffer reused across sizes (a larger one: a view of it), from views at odd offsets', () => {
    const out = Buffer.alloc(pemByteLength('X509 CRL', 200_000));
    for (const n of [200_000, 0, 1, 47, 48, 49, 1_001, 199_999]) {
      const whole = randomBytes(n + 3);
      const der = whole.subarray(3); // an odd byteOffset: the 32-bit stores go through a DataView
      const pem = pemBytes('X509 CRL', der, out);
      expect(pem.buffer).toBe(out.buffer);
      expect(pem.length).toBe(pemByteLength('X509 CRL', n));
      expect(pem.toString('latin1'), `${n} bytes`).toBe(reference('X509 CRL', der));
    }
    expect(() => pemBytes('X509 CRL', randomBytes(200_010), out)).toThrow(RangeError);
  });

  it('round-trips through pemBlocks, from a view with an offset', () => {
    const whole = randomBytes(5000);
    const view = whole.subarray(7, 4007);
    const pem = toPem('CERTIFICATE', view);
    expect(pemBlocks(pem, 'CERTIFICATE')).toEqual([Buffer.from(view)]);
  });
});

describe('peekCrlNumber (the number a PEM CRL file claims, from its last lines)', () => {
  it('reads it from a 4 KB tail of a large CRL, with or without Issuing Distribution Point, EC or RSA', async () => {
    const { buildCrl, createRevokedEntriesEncoder } = await import('../src/crl/build-crl.ts');
    const { createCrlSigner } = await import('../src/pki/crl-signer.ts');
    const { crlDerToPem, peekCrlNumber } = await import('../src/crl/verify-crl.ts');
    const { generateKeyPairSync } = await import('node:crypto');
    const encoder = createRevokedEntriesEncoder();
    for (let i = 1; i <= 20_000; i++) encoder.add({ serialHex: (0x4000000000000000000000000000000000000000n + BigInt(i) * 7919n).toString(16), revokedAt: new Date(1.7e12 + i * 1000), reasonCode: i % 2 });
    const revoked = encoder.finish();
    for (const key of [generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey]) {
      for (const [crlNumber, distributionPointUrl] of [[1n, undefined], [0x7fn, 'http://certfleet.test/pki/crl'], [0x80n, undefined], [2n ** 62n - 1n, 'http://x.test/c']] as const) {
        const der = buildCrl({
          issuerNameDer: Buffer.from('300f310d300b06035504030c0454657374', 'hex'),
          authorityKeyId: Buffer.alloc(20, 1),
          thisUpdate: new Date('2026-11-01T00:00:00Z'),
          nextUpdate: new Date('2026-11-08T00:00:00Z'),
          crlNumber,
          distributionPointUrl,
          revoked,
          signer: createCrlSigner(key),
        });
        const pem = crlDerToPem(der);
        expect(peekCrlNumber(pem.slice(-4096)), `${crlNumber}`).toBe(crlNumber);
        expect(peekCrlNumber(pem), `${crlNumber}, whole file`).toBe(crlNumber);
      }
    }
  });

  it('answers null for what is not a 64-column PEM CRL', async () => {
    const { peekCrlNumber } = await import('../src/crl/verify-crl.ts');
    expect(peekCrlNumber('')).toBeNull();
    expect(peekCrlNumber('garbage\n-----END X509 CRL-----\n')).toBeNull();
    expect(peekCrlNumber(toPem('CERTIFICATE', randomBytes(3000)))).toBeNull();
    const body = randomBytes(3000).toString('base64').match(/.{1,76}/g)!.join('\n');
    expect(peekCrlNumber(`-----BEGIN X509 CRL-----\n${body}\n-----END X509 CRL-----\n`)).toBeNull();
  });

  it('the one decoder: every block of the label in order, text around ignored, a broken block refused', () => {
    const a = randomBytes(100);
    const b = randomBytes(200);
    const text = `intro\n${toPem('CERTIFICATE', a)}between\n${toPem('X509 CRL', randomBytes(10))}${toPem('CERTIFICATE', b)}`;
    expect(pemBlocks(text, 'CERTIFICATE')).toEqual([a, b]);
    expect(pemBlocks('no PEM here', 'CERTIFICATE')).toEqual([]);
    expect(() => pemBlocks('-----BEGIN CERTIFICATE-----\nAAAA\n', 'CERTIFICATE')).toThrow(PemError);
    expect(() => pemBlocks('-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n', 'CERTIFICATE')).toThrow(/not base64/);
  });
});
