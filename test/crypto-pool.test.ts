/**
 * Signatures over large inputs are made and checked on the calling thread (support/crypto-pool.ts):
 * Node's asynchronous sign/verify copy their input first, and above 32 MiB that copy costs the
 * calling thread more than the hash. The limit is lowered here (mocked) so that a small CRL
 * takes the large-input path; node:crypto is wrapped only to see which form was called.
 */
import * as crypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';

vi.mock('../src/support/crypto-pool.ts', () => ({ THREAD_POOL_MAX_BYTES: 20_000, inThreadPool: (bytes: number) => bytes <= 20_000 }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return { ...real, sign: vi.fn(real.sign), verify: vi.fn(real.verify) };
});

const { fileKeySigner } = await import('../src/pki/kms/file-signer.ts');
const { verifyCrlAsync, CrlVerificationError } = await import('../src/crl/verify-crl.ts');
const { buildCrl, encodeRevokedEntries } = await import('../src/crl/build-crl.ts');
const { createCrlSigner } = await import('../src/pki/crl-signer.ts');

/** How the last call of a wrapped node:crypto function was made: with a callback (the pool) or not. */
const lastForm = (fn: unknown) => {
  const calls = (fn as ReturnType<typeof vi.fn>).mock.calls;
  return typeof calls.at(-1)?.at(-1) === 'function' ? 'pool' : 'calling thread';
};

describe('signatures over inputs above the thread pool limit', () => {
  for (const type of ['ec', 'rsa'] as const) {
    it(`${type}: the file signer signs a large input on the calling thread and a mid-sized one in the pool; both verify`, async () => {
      const { privateKey, publicKey } = type === 'ec' ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const signer = fileKeySigner(privateKey);
      const check = (data: Buffer, signature: Buffer) => crypto.verify(signer.hash, data, type === 'ec' ? { key: publicKey, dsaEncoding: 'der' } : publicKey, signature);
      const large = crypto.randomBytes(20_001);
      const signedLarge = await signer.sign(large);
      expect(lastForm(crypto.sign)).toBe('calling thread');
      expect(check(large, signedLarge)).toBe(true);
      const mid = crypto.randomBytes(type === 'ec' ? 17_000 : 2_000); // above the inline EC limit (16 KiB), below the pool's
      const signedMid = await signer.sign(mid);
      expect(lastForm(crypto.sign)).toBe('pool');
      expect(check(mid, signedMid)).toBe(true);
    });
  }

  it('verifyCrlAsync checks a large CRL on the calling thread: a good one resolves, a bad signature is refused', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = new Date();
    const revoked = encodeRevokedEntries(
      Array.from({ length: 1_000 }, (_, i) => ({ serialHex: (0x1000 + i).toString(16), revokedAt: new Date(now.getTime() - 60_000), reasonCode: 1 })),
    );
    const der = buildCrl({
      issuerNameDer: Buffer.from('3011310f300d06035504030c06746573746361', 'hex'),
      authorityKeyId: crypto.randomBytes(20),
      thisUpdate: new Date(now.getTime() - 1_000),
      nextUpdate: new Date(now.getTime() + 86_400_000),
      crlNumber: 7n,
      revoked,
      signer: createCrlSigner(privateKey),
    });
    expect(der.length).toBeGreaterThan(20_000);
    const verified = await verifyCrlAsync(der, { caPublicKey: publicKey, now });
    expect(lastForm(crypto.verify)).toBe('calling thread');
    expect(verified).toMatchObject({ crlNumber: 7n, entryCount: 1_000 });
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    await expect(verifyCrlAsync(der, { caPublicKey: other, now })).rejects.toBeInstanceOf(CrlVerificationError);
    expect(lastForm(crypto.verify)).toBe('calling thread');
  });
});
