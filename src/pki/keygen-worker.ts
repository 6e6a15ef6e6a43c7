/**
 * The RSA key-generation worker thread of keygen-pool.ts: one request at a time, answered with
 * the key pair or the error's message. A real module, type-checked like the rest; it imports
 * only Node built-ins, so it starts fast and needs nothing else in the worker.
 */
import { generateKeyPairSync } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/** What the pool sends: a job id and the modulus size. */
export interface KeygenRequest {
  id: number;
  bits: number;
}

/** What the worker answers for a job. */
export type KeygenReply = { id: number; spkiDer: Uint8Array; privateKeyPem: string } | { id: number; error: string };

/** The public exponent of every generated key (65537, as the key rules require). */
export const RSA_PUBLIC_EXPONENT = 0x10001;

export function generateRsa({ id, bits }: KeygenRequest): KeygenReply {
  try {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', {
      modulusLength: bits,
      publicExponent: RSA_PUBLIC_EXPONENT,
      publicKeyEncoding: { type: 'spki', format: 'der' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    return { id, spkiDer: publicKey, privateKeyPem: privateKey };
  } catch (e) {
    return { id, error: e instanceof Error ? e.message : String(e) };
  }
}

const port = parentPort;
if (port) port.on('message', (request: KeygenRequest) => port.postMessage(generateRsa(request)));
