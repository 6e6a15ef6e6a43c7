import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { p256Pkcs8Der, p256SpkiDer } from '../src/domain/ec-key-der.ts';
import { generateDeviceKey, p256KeyParts } from '../src/pki/keys.ts';
import { run } from './support/openssl.ts';

describe('hand-encoded P-256 keys', () => {
  it('are byte-identical to what OpenSSL exports', () => {
    for (let i = 0; i < 50; i++) {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const jwk = privateKey.export({ format: 'jwk' });
      const [d, x, y] = [jwk.d, jwk.x, jwk.y].map((v) => Buffer.from(v!, 'base64url'));
      expect(p256Pkcs8Der(d, x, y).equals(privateKey.export({ format: 'der', type: 'pkcs8' }))).toBe(true);
      expect(p256SpkiDer(x, y).equals(publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    }
  });

  it('p256KeyParts (ECDH generation): OpenSSL reads the encoded key back to the same bytes, a short scalar padded to 32 octets', () => {
    let padded = 0;
    // One ECDH handle makes every key (keys.ts): each key a new one, earlier parts never changed after the fact.
    const seen = new Set<string>();
    const first = p256KeyParts();
    const firstCopy = Buffer.concat([first.d, first.x, first.y]);
    // At least 1,000 keys, and on until one scalar had a leading zero octet (1 in 256; 50,000 keys without one: a failure).
    for (let i = 0; i < 50_000 && (i < 1000 || padded === 0); i++) {
      const { d, x, y } = p256KeyParts();
      expect([d.length, x.length, y.length]).toEqual([32, 32, 32]);
      expect(seen.has(d.toString('hex')) || seen.has(x.toString('hex'))).toBe(false);
      seen.add(d.toString('hex'));
      seen.add(x.toString('hex'));
      if (d[0] === 0) padded++;
      const der = p256Pkcs8Der(d, x, y);
      const priv = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      expect(priv.export({ format: 'der', type: 'pkcs8' }).equals(der)).toBe(true);
      expect(createPublicKey(priv).export({ format: 'der', type: 'spki' }).equals(p256SpkiDer(x, y))).toBe(true);
    }
    expect(padded).toBeGreaterThan(0);
    expect(Buffer.concat([first.d, first.x, first.y]).equals(firstCopy)).toBe(true);
  });

  it('generateDeviceKey gives a PEM that openssl reads and whose key matches the SPKI', async () => {
    const key = await generateDeviceKey('ec-p256');
    const check = run('openssl', ['pkey', '-check', '-noout'], key.privateKeyPem);
    expect(check.out).toMatch(/Key is valid/);
    const priv = createPrivateKey(key.privateKeyPem);
    const pub = createPublicKey({ key: key.publicKey.spkiDer, format: 'der', type: 'spki' });
    const sig = sign('sha256', Buffer.from('hello'), priv);
    expect(verify('sha256', Buffer.from('hello'), pub, sig)).toBe(true);
    expect(key.publicKey.keyType).toBe('ec-p256');
  });
});
