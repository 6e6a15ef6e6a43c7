/**
 * Signatures over large inputs are made and checked on the calling thread (support/crypto-pool.ts):
 * Node's asynchronous sign/verify copy their input first, and above 32 MiB that copy costs the
 * calling thread more than the hash. The limit is lowered here (each function takes it) so that a
 * small input takes the large-input path. Which path ran is seen from when the promise settles: one
 * made on the calling thread is settled within a few microtask turns, one waiting for libuv's pool
 * cannot be (its callback runs in a later turn of the event loop).
 */
import * as crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fileKeySigner } from '../src/pki/kms/file-signer.ts';
import { CrlVerificationError, verifyCrlAsync } from '../src/crl/verify-crl.ts';
import { buildCrl, encodeRevokedEntries } from '../src/crl/build-crl.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';
import { inThreadPool, THREAD_POOL_MAX_BYTES } from '../src/support/crypto-pool.ts';

const LIMIT = 20_000;

/** 'calling thread' when the promise settles within the microtask turns, 'pool' when it does not. */
async function pathOf(promise: Promise<unknown>): Promise<'calling thread' | 'pool'> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  const path = settled ? 'calling thread' : 'pool';
  await promise.catch(() => undefined);
  return path;
}

describe('signatures over inputs above the thread pool limit', () => {
  it('the limit is 32 MiB', () => {
    expect(THREAD_POOL_MAX_BYTES).toBe(32 * 1024 * 1024);
    expect(inThreadPool(THREAD_POOL_MAX_BYTES)).toBe(true);
    expect(inThreadPool(THREAD_POOL_MAX_BYTES + 1)).toBe(false);
  });

  for (const type of ['ec', 'rsa'] as const) {
    it(`${type}: the file signer signs a large input on the calling thread and a mid-sized one in the pool; both verify`, async () => {
      const { privateKey, publicKey } = type === 'ec' ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }) : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const signer = fileKeySigner(privateKey, 'test', LIMIT);
      const check = (data: Buffer, signature: Buffer) => crypto.verify(signer.hash, data, type === 'ec' ? { key: publicKey, dsaEncoding: 'der' } : publicKey, signature);
      const large = crypto.randomBytes(LIMIT + 1);
      const signingLarge = signer.sign(large);
      expect(await pathOf(signingLarge)).toBe('calling thread');
      expect(check(large, await signingLarge)).toBe(true);
      const mid = crypto.randomBytes(type === 'ec' ? 17_000 : 2_000); // above the inline EC limit (16 KiB), below the lowered pool limit
      const signingMid = signer.sign(mid);
      expect(await pathOf(signingMid)).toBe('pool');
      expect(check(mid, await signingMid)).toBe(true);
    });
  }

  it('verifyCrlAsync checks a large CRL on the calling thread and a smaller one in the pool: a good one resolves, a bad signature is refused either way', async () => {
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
    expect(der.length).toBeGreaterThan(LIMIT);
    const other = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    for (const [limit, path] of [[LIMIT, 'calling thread'], [undefined, 'pool']] as const) {
      const good = verifyCrlAsync(der, { caPublicKey: publicKey, now, threadPoolMaxBytes: limit });
      expect(await pathOf(good)).toBe(path);
      expect(await good).toMatchObject({ crlNumber: 7n, entryCount: 1_000 });
      const bad = verifyCrlAsync(der, { caPublicKey: other, now, threadPoolMaxBytes: limit });
      expect(await pathOf(bad)).toBe(path);
      await expect(bad).rejects.toBeInstanceOf(CrlVerificationError);
    }
  });
});
