import { generateKeyPair, createPublicKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { KeyType } from '../domain/certificate.ts';

const generate = promisify(generateKeyPair);

export interface GeneratedKey {
  publicKey: KeyObject;
  privateKeyPem: string;
}

/** Runs in libuv's thread pool, so RSA generation never blocks the event loop. */
export async function generateDeviceKey(keyType: KeyType | 'rsa-3072'): Promise<GeneratedKey> {
  const { publicKey, privateKey } =
    keyType === 'ec-p256'
      ? await generate('ec', { namedCurve: 'prime256v1' })
      : await generate('rsa', { modulusLength: keyType === 'rsa-3072' ? 3072 : 2048, publicExponent: 0x10001 });
  return { publicKey, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
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

export const publicKeyFromSpki = (spki: ArrayBuffer | Uint8Array): KeyObject =>
  createPublicKey({ key: Buffer.from(spki instanceof Uint8Array ? spki : new Uint8Array(spki)), format: 'der', type: 'spki' });

export const spkiOf = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' });
