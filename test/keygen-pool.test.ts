/**
 * The RSA key-generation pool runs its worker module (src/pki/keygen-worker.ts, a real module
 * type-checked with the rest) from the sources and from the compiled dist/, and generates
 * 65537-exponent keys.
 */
import { spawnSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createKeygenPool } from '../src/pki/keygen-pool.ts';
import { scaled } from './support/timeouts.ts';

const ROOT = join(import.meta.dirname, '..');

function exponentOf(spkiDer: Buffer): string | undefined {
  return createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }).export({ format: 'jwk' }).e;
}

describe('RSA key-generation pool', () => {
  it('generates keys in its worker thread from the sources', async () => {
    const pool = createKeygenPool(1);
    try {
      const [a, b] = await Promise.all([pool.generateRsa(2048, 't1'), pool.generateRsa(2048, 't2')]);
      for (const key of [a, b]) {
        expect(key.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
        expect(exponentOf(key.spkiDer)).toBe('AQAB'); // 65537
      }
      expect(a.spkiDer.equals(b.spkiDer)).toBe(false);
      await expect(pool.generateRsa(100, 't1')).rejects.toThrow(/RSA key generation failed/);
    } finally {
      await pool.close();
    }
  }, scaled(60_000));

  it.runIf(existsSync(join(ROOT, 'dist/pki/keygen-worker.js')))('generates keys from dist/ (the compiled worker module; skipped without a build)', () => {
    const script = `
      const { createKeygenPool } = await import(${JSON.stringify(join(ROOT, 'dist/pki/keygen-pool.js'))});
      const pool = createKeygenPool(1);
      const key = await pool.generateRsa(2048, 't');
      await pool.close();
      console.log(key.privateKeyPem.split('\\n')[0]);`;
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-keygen-'));
    writeFileSync(join(dir, 'run.mjs'), script);
    const r = spawnSync(process.execPath, [join(dir, 'run.mjs')], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('-----BEGIN PRIVATE KEY-----');
  }, scaled(60_000));
});
