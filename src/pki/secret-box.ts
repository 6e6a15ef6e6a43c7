import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { SealContext, SecretSealer } from '../app/ports.ts';

export type { SealContext, SecretSealer } from '../app/ports.ts';

/**
 * Encryption at rest of small secrets (webhook HMAC keys): AES-256-GCM with a random 12-byte IV
 * per value. Pure computation, no I/O.
 *
 * - `v2:<key id>:<iv>:<tag>:<ciphertext>` (base64url): what `seal` writes. The associated data
 *   binds the ciphertext to its row (tenant and webhook id), so a ciphertext copied to another
 *   row does not decrypt; the key id (a hash prefix of the key) says which key sealed it, so a
 *   re-encryption knows what is left to do.
 * - `v1:<iv>:<tag>:<ciphertext>`: the earlier format, without associated data. Still opened
 *   (with any configured key) until `certfleet webhooks rekey` re-seals it as v2.
 * - anything else: legacy plaintext, returned as is (the worker seals it on its first run).
 */
export const SECRET_KEY_BYTES = 32;
const V1 = 'v1:';
const V2 = 'v2:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** True for a value `seal` produced now or before (anything else is legacy plaintext). */
export const isSealed = (stored: string): boolean => stored.startsWith(V1) || stored.startsWith(V2);

/** A short, non-secret identifier of a key: 8 base64url characters of its SHA-256. */
export const secretKeyId = (key: Buffer): string => createHash('sha256').update('certfleet secret key id\n').update(key).digest().subarray(0, 6).toString('base64url');

const associatedData = (c: SealContext) => Buffer.from(`certfleet webhook secret v2\n${c.tenantId}\n${c.webhookId}`, 'utf8');

function decrypt(key: Buffer, parts: string[], aad: Buffer | null): string {
  const [iv, tag, ciphertext] = parts.map((p) => Buffer.from(p, 'base64url'));
  if (iv?.length !== IV_BYTES || tag?.length !== TAG_BYTES || ciphertext === undefined) throw new Error('malformed encrypted secret');
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  if (aad) decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
}

const NO_KEY = 'the encrypted secret does not decrypt with WEBHOOK_SECRET_KEY (nor WEBHOOK_SECRET_KEY_PREVIOUS), or belongs to another webhook';

/**
 * `key` seals; `key` and `previous` open (a key rotation: both are accepted while
 * `certfleet webhooks rekey` re-seals every stored value under `key`).
 */
export function createSecretBox(key: Buffer, previous: Buffer[] = []): SecretSealer {
  for (const k of [key, ...previous]) {
    if (k.length !== SECRET_KEY_BYTES) throw new Error(`the secret encryption key must be ${SECRET_KEY_BYTES} bytes (got ${k.length})`);
  }
  const current = { id: secretKeyId(key), key: Buffer.from(key) }; // private copies
  const keys = [current, ...previous.map((k) => ({ id: secretKeyId(k), key: Buffer.from(k) }))];
  const currentPrefix = `${V2}${current.id}:`;
  return {
    currentPrefix,
    isCurrent: (stored) => stored.startsWith(currentPrefix),
    seal(plain, context) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current.key, iv);
      cipher.setAAD(associatedData(context));
      const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return `${currentPrefix}${[iv, cipher.getAuthTag(), ciphertext].map((b) => b.toString('base64url')).join(':')}`;
    },
    open(stored, context) {
      if (stored.startsWith(V2)) {
        const parts = stored.slice(V2.length).split(':');
        if (parts.length !== 4) throw new Error('malformed encrypted secret');
        const k = keys.find((x) => x.id === parts[0]);
        if (!k) throw new Error(`${NO_KEY} (it was sealed by key ${parts[0]})`);
        try {
          return decrypt(k.key, parts.slice(1), associatedData(context));
        } catch (e) {
          if ((e as Error).message === 'malformed encrypted secret') throw e;
          throw new Error(NO_KEY);
        }
      }
      if (!stored.startsWith(V1)) return stored;
      const parts = stored.slice(V1.length).split(':');
      if (parts.length !== 3) throw new Error('malformed encrypted secret');
      for (const k of keys) {
        try {
          return decrypt(k.key, parts, null);
        } catch (e) {
          if ((e as Error).message === 'malformed encrypted secret') throw e;
        }
      }
      throw new Error(NO_KEY);
    },
  };
}

/** `WEBHOOK_SECRET_KEY`: base64 (or base64url) of exactly 32 bytes. */
export function parseSecretKey(text: string, name = 'WEBHOOK_SECRET_KEY'): Buffer {
  const trimmed = text.trim();
  const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, trimmed.includes('-') || trimmed.includes('_') ? 'base64url' : 'base64') : Buffer.alloc(0);
  if (key.length !== SECRET_KEY_BYTES) throw new Error(`${name} must be ${SECRET_KEY_BYTES} bytes, base64-encoded (e.g. openssl rand -base64 32)`);
  return key;
}
