import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SecretSealer } from '../app/ports.ts';

export type { SecretSealer } from '../app/ports.ts';

/**
 * Encryption at rest of small secrets (webhook HMAC keys): AES-256-GCM, a random 12-byte IV
 * per value, stored as `v1:<iv>:<tag>:<ciphertext>` (base64url). Pure computation, no I/O.
 */
export const SECRET_KEY_BYTES = 32;
const PREFIX = 'v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** True for a value `seal` produced (anything else is legacy plaintext). */
export const isSealed = (stored: string): boolean => stored.startsWith(PREFIX);

export function createSecretBox(key: Buffer): SecretSealer {
  if (key.length !== SECRET_KEY_BYTES) throw new Error(`the secret encryption key must be ${SECRET_KEY_BYTES} bytes (got ${key.length})`);
  const k = Buffer.from(key); // a private copy
  return {
    seal(plain) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', k, iv);
      const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return `${PREFIX}${[iv, tag, ciphertext].map((b) => b.toString('base64url')).join(':')}`;
    },
    open(stored) {
      if (!isSealed(stored)) return stored;
      const parts = stored.slice(PREFIX.length).split(':');
      if (parts.length !== 3) throw new Error('malformed encrypted secret');
      const [iv, tag, ciphertext] = parts.map((p) => Buffer.from(p, 'base64url'));
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new Error('malformed encrypted secret');
      try {
        const decipher = createDecipheriv('aes-256-gcm', k, iv, { authTagLength: TAG_BYTES });
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
      } catch {
        throw new Error('the encrypted secret does not decrypt with this key (is WEBHOOK_SECRET_KEY the one it was encrypted with?)');
      }
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
