/**
 * The RabbitMQ CRL hash directory (crlHashDirTarget): the agent writes each CA's CRL as DER (OTP
 * decodes the file at every handshake; a PEM file would add a base64 decode of the whole CRL to
 * each), named by the issuer's OpenSSL subject hash; reading it back (the agent's floor at start)
 * gives PEM, from DER files and from the PEM files an earlier version wrote.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crlHashDirTarget } from '../src/broker/agent/crl-targets.ts';
import type { CheckedCrl } from '../src/broker/agent/bundle-check.ts';
import { buildCrl, encodeRevokedEntries } from '../src/crl/build-crl.ts';
import { crlDerToPem } from '../src/crl/verify-crl.ts';
import { oid, sequence, set, utf8String } from '../src/domain/der.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const thisUpdate = new Date('2026-03-01T10:00:00Z');
const der = buildCrl({
  issuerNameDer: sequence(set(sequence(oid('2.5.4.3'), utf8String('Hash Dir CA')))),
  authorityKeyId: Buffer.alloc(20, 7),
  thisUpdate,
  nextUpdate: new Date('2026-03-08T10:00:00Z'),
  crlNumber: 3n,
  signer: createCrlSigner(ec.privateKey),
  revoked: encodeRevokedEntries([{ serialHex: '0abc', revokedAt: thisUpdate, reasonCode: 1 }]),
});
const crl: CheckedCrl = { issuerKeyId: '07'.repeat(20), crlNumber: 3n, thisUpdate, nextUpdate: new Date('2026-03-08T10:00:00Z'), der };
const dir = mkdtempSync(join(tmpdir(), 'crl-hash-dir-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('crlHashDirTarget', () => {
  it("writes each CA's CRL as DER under the issuer's OpenSSL subject hash, and reads it back as PEM", async () => {
    const target = crlHashDirTarget(dir);
    expect(await target.read()).toBeNull();
    await target.write([crl], crlDerToPem(der));
    const hash = execFileSync('openssl', ['crl', '-hash', '-noout', '-inform', 'DER'], { input: der, encoding: 'utf8' }).trim();
    expect(readdirSync(dir).filter((n) => !n.startsWith('.'))).toEqual([`${hash}.r0`]);
    expect(readFileSync(join(dir, `${hash}.r0`)).equals(der)).toBe(true);
    expect(await target.read()).toBe(crlDerToPem(der));
  });

  it('reads a PEM file an earlier version wrote', async () => {
    const old = mkdtempSync(join(dir, 'old-'));
    writeFileSync(join(old, '0badc0de.r0'), crlDerToPem(der));
    expect(await crlHashDirTarget(old).read()).toBe(crlDerToPem(der));
  });
});
