/**
 * The one PEM encoder (src/pki/pem.ts) against the plainest possible reference: base64 of the
 * whole input cut into 64-character lines (RFC 7468), at every size where its block-wise,
 * in-place line spreading could go wrong.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { pemBlocks, pemBytes, toPem } from '../src/pki/pem.ts';

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

  it('round-trips through pemBlocks, from a view with an offset', () => {
    const whole = randomBytes(5000);
    const view = whole.subarray(7, 4007);
    const pem = toPem('CERTIFICATE', view);
    expect(pemBlocks(pem, 'CERTIFICATE')).toEqual([Buffer.from(view)]);
  });
});
