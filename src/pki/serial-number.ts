import { webcrypto } from 'node:crypto';

/** 20 random bytes (RFC 5280's maximum), high bits fixed so the value is positive and exactly 40 hex digits. */
export function randomSerialHex(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(20));
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}
