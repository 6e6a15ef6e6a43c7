import { createECDH, generateKeyPair, createPublicKey, KeyObject, webcrypto } from 'node:crypto';
import type { KeyType } from '../domain/certificate.ts';
import { p256Pkcs8Der, p256SpkiDer } from '../domain/ec-key-der.ts';
import { toPem } from './pem.ts';

export interface GeneratedKey {
  publicKey: { spkiDer: Buffer; keyType: string };
  privateKeyPem: string;
}

const ENCODING = {
  publicKeyEncoding: { type: 'spki', format: 'der' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
} as const;

/**
 * Generation runs in libuv's thread pool, so RSA generation never blocks the event loop.
 * P-256 keys are encoded by hand from their JWK parts (see domain/ec-key-der.ts).
 */
export async function generateDeviceKey(keyType: KeyType | 'rsa-3072'): Promise<GeneratedKey> {
  if (keyType === 'ec-p256') {
    // Inline: a P-256 key is tens of microseconds, less than the thread pool's hand-off costs (file-signer.ts).
    // OpenSSL's EC key generation through ECDH's handle: the raw d and point without a KeyObject and
    // its JWK export (about 33 µs of CPU against 79 µs, measured on this machine).
    const { d, x, y } = p256KeyParts();
    return { publicKey: { spkiDer: p256SpkiDer(x, y), keyType }, privateKeyPem: toPem('PRIVATE KEY', p256Pkcs8Der(d, x, y)) };
  }
  const [spkiDer, privateKeyPem] = await new Promise<[Buffer, string]>((resolve, reject) =>
    generateKeyPair('rsa', { modulusLength: keyType === 'rsa-3072' ? 3072 : 2048, publicExponent: 0x10001, ...ENCODING }, (err: Error | null, pub: Buffer, priv: string) =>
      err ? reject(err) : resolve([pub, priv]),
    ),
  );
  return { publicKey: { spkiDer, keyType }, privateKeyPem };
}

/**
 * One ECDH handle for every P-256 key: generateKeys() replaces its key with a new one each call
 * (OpenSSL's EC_KEY_generate_key; synchronous, so no two callers share a key), which saves the
 * handle's creation, half of the generation's CPU (about 18 µs of 36, measured on this machine).
 */
let p256Handle: ReturnType<typeof createECDH> | null = null;

/** A new P-256 key's private scalar (32 octets, RFC 5915) and public point coordinates (32 octets each). */
export function p256KeyParts(): { d: Buffer; x: Buffer; y: Buffer } {
  const ecdh = (p256Handle ??= createECDH('prime256v1'));
  const point = ecdh.generateKeys(); // uncompressed: 04 || x || y
  const raw = ecdh.getPrivateKey(); // big-endian, without leading zero octets
  if (point.length !== 65 || point[0] !== 4 || raw.length > 32) throw new Error('unexpected P-256 key encoding');
  const d = raw.length === 32 ? raw : Buffer.concat([Buffer.alloc(32 - raw.length), raw]);
  return { d, x: point.subarray(1, 33), y: point.subarray(33, 65) };
}

/** `rsa-2048`, `ec-p256`, ... as stored in device_certificates.key_type. */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') return `rsa-${d.modulusLength}`;
  if (key.asymmetricKeyType === 'ec') {
    const curve = { prime256v1: 'p256', secp384r1: 'p384', secp521r1: 'p521' }[d.namedCurve ?? ''] ?? d.namedCurve;
    return `ec-${curve}`;
  }
  return key.asymmetricKeyType ?? 'unknown';
}

/** The DER of a P-256 SubjectPublicKeyInfo up to the point's 64 coordinate octets (id-ecPublicKey, prime256v1, uncompressed point): OpenSSL's own export of such a key. */
export const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');

/**
 * A SubjectPublicKeyInfo as a KeyObject. The canonical P-256 form (P256_SPKI_PREFIX, then x and y)
 * is imported from its coordinates (JWK), which OpenSSL checks to be a point of the curve, as its
 * DER decoder does: about 90 µs of CPU against 145 µs through the decoder, measured on this
 * machine (a device CSR's key, issue 22). Any other SPKI goes through the DER decoder.
 */
export function publicKeyFromSpki(spki: ArrayBuffer | Uint8Array): KeyObject {
  const der = Buffer.from(spki instanceof Uint8Array ? spki : new Uint8Array(spki));
  if (der.length === P256_SPKI_PREFIX.length + 64 && der.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)) {
    const at = P256_SPKI_PREFIX.length;
    return createPublicKey({
      key: { kty: 'EC', crv: 'P-256', x: der.toString('base64url', at, at + 32), y: der.toString('base64url', at + 32, at + 64) },
      format: 'jwk',
    });
  }
  return createPublicKey({ key: der, format: 'der', type: 'spki' });
}

const P256_IMPORT = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/**
 * A canonical P-256 SubjectPublicKeyInfo (P256_SPKI_PREFIX, then x and y) as a KeyObject, through
 * WebCrypto's raw import; null for any other SPKI (publicKeyFromSpki then). OpenSSL decodes the
 * point there (EC_POINT_oct2point: refused unless both coordinates are below p and the point is
 * on the curve; the point at infinity has no uncompressed form), which is every check a P-256 public
 * key needs: its cofactor is 1, so a point of the curve is in the group of prime order. The JWK
 * import (publicKeyFromSpki) adds EC_KEY_check_key's multiplication of the point by the order, a
 * whole scalar multiplication that can only confirm it: about two thirds of that import's CPU in a
 * perf profile (issue 22).
 */
export async function p256PublicKeyFromSpki(spki: Uint8Array): Promise<KeyObject | null> {
  const der = Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength);
  if (der.length !== P256_SPKI_PREFIX.length + 64 || !der.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX)) return null;
  const point = der.subarray(P256_SPKI_PREFIX.length - 1); // 04 || x || y
  return KeyObject.from(await webcrypto.subtle.importKey('raw', point, P256_IMPORT, true, ['verify']));
}

export const spkiOf = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' });
