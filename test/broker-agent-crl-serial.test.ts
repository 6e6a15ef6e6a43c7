/**
 * crlListsSerial (the agent's "is my revoked canary in this CRL?"): the same answer as the list of
 * every serial the CRL names, for serials with and without a high bit (a leading 00 in DER), odd
 * hex lengths and leading zeros in the hex, an empty CRL, and a serial that is a prefix or an
 * extension of a listed one.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { crlListsSerial } from '../src/broker/agent/crl-serial.ts';
import { buildCrl, encodeRevokedEntries, newlyRevokedSerials } from '../src/crl/build-crl.ts';
import { oid, sequence, set, utf8String } from '../src/domain/der.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const base = {
  issuerNameDer: sequence(set(sequence(oid('2.5.4.3'), utf8String('Unit Test CA')))),
  authorityKeyId: Buffer.alloc(20, 7),
  thisUpdate: new Date('2026-03-01T10:00:00Z'),
  nextUpdate: new Date('2026-03-08T10:00:00Z'),
  crlNumber: 10n,
  signer: createCrlSigner(ec.privateKey),
};
const revokedAt = new Date('2026-03-01T09:00:00Z');

describe('crlListsSerial', () => {
  const listed = ['01', '7f', '80', 'ff01', 'abc', ...Array.from({ length: 200 }, () => randomBytes(16).toString('hex').replace(/^0+/, ''))];
  const unique = [...new Set(listed.map((s) => BigInt(`0x${s}`)))].sort((a, b) => (a < b ? -1 : 1)).map((n) => n.toString(16));
  const der = buildCrl({ ...base, revoked: encodeRevokedEntries(unique.map((serialHex) => ({ serialHex, revokedAt, reasonCode: 1 }))) });

  it('finds every listed serial, as the full list does', () => {
    const all = new Set(newlyRevokedSerials(null, der));
    for (const s of unique) {
      expect(all.has(s)).toBe(true);
      expect(crlListsSerial(der, s)).toBe(true);
      expect(crlListsSerial(der, s.toUpperCase())).toBe(true);
      expect(crlListsSerial(der, `00${s}`)).toBe(true);
    }
  });

  it('does not find serials the CRL does not list', () => {
    for (const s of ['02', '7e', '8000', 'ff', 'ff0100', '0abcd', randomBytes(16).toString('hex')]) {
      expect(crlListsSerial(der, s)).toBe(newlyRevokedSerials(null, der).includes(s.replace(/^0+(?=.)/, '')));
    }
    expect(crlListsSerial(der, 'ff')).toBe(false); // a prefix of ff01
    expect(crlListsSerial(der, 'ff0100')).toBe(false); // an extension of ff01
  });

  it('an empty CRL lists nothing', () => {
    const empty = buildCrl({ ...base, revoked: encodeRevokedEntries([]) });
    expect(crlListsSerial(empty, '01')).toBe(false);
  });
});
