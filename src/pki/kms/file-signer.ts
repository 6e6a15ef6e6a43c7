/** A CA key held in this process (a PEM file, plain or encrypted PKCS#8): today's default. */
import { createPublicKey, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { createCrlSigner } from '../crl-signer.ts';
import { describeKey, spkiOf } from '../keys.ts';
import { inThreadPool, THREAD_POOL_MAX_BYTES } from '../../support/crypto-pool.ts';
import { hashOfAlgorithm, type KeySigner } from './key-signer.ts';

const signAsync = promisify(sign);

/**
 * An ECDSA signature of a small TBS (a certificate: tens of microseconds) is made on the calling
 * thread: handing it to libuv's thread pool costs more CPU than the signature (measured: about
 * 35 µs inline against 70 µs through the pool, on this 2-core machine) and a thread hop per
 * certificate. Anything larger (a CRL) and every RSA signature run in the pool, up to the size
 * where the pool's input copy costs the calling thread more than the signature (a CRL of about
 * 700,000 entries: support/crypto-pool.ts).
 */
export const INLINE_SIGN_MAX_BYTES = 16 * 1024;

/** EC P-256/P-384 (ECDSA with SHA-256/384) or RSA (sha256WithRSAEncryption). */
/** `threadPoolMaxBytes`: the largest input signed in libuv's pool (support/crypto-pool.ts; lowered by its test). */
export function fileKeySigner(privateKey: KeyObject, label = '(in memory)', threadPoolMaxBytes = THREAD_POOL_MAX_BYTES): KeySigner {
  const crl = createCrlSigner(privateKey); // refuses a public key or an unsupported type
  const algorithmIdentifierDer = Buffer.from(crl.algorithmIdentifierDer);
  const hash = hashOfAlgorithm(algorithmIdentifierDer);
  const publicKey = createPublicKey(privateKey);
  const options = privateKey.asymmetricKeyType === 'ec' ? { key: privateKey, dsaEncoding: 'der' as const } : privateKey;
  return {
    kind: 'file',
    keyType: describeKey(privateKey),
    algorithmIdentifierDer,
    hash,
    publicKey,
    spkiDer: spkiOf(publicKey),
    label,
    sign: (tbs) =>
      (privateKey.asymmetricKeyType === 'ec' && tbs.length <= INLINE_SIGN_MAX_BYTES) || !inThreadPool(tbs.length, threadPoolMaxBytes) // support/crypto-pool.ts
        ? new Promise<Buffer>((resolve) => resolve(sign(hash, tbs, options)))
        : signAsync(hash, tbs, options),
    signSync: (tbs) => sign(hash, tbs, options),
    close: async () => {},
  };
}
