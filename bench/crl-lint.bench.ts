/**
 * CRL lint benchmark (not a test): lintCrl (pki/lint) against verifyCrl (its peer: the
 * TLV walk + signature check every publication already runs) on the same CRLs, same run.
 * The lint must be linear: ns per entry stays flat from 10k to 1M.
 *
 *   node --import tsx bench/crl-lint.bench.ts
 */
import { randomBytes } from 'node:crypto';
import { buildCrl, createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { crlAuthorityFor } from '../src/crl/publish-crl.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { caLintProfile } from '../src/pki/lint/ca-profile.ts';
import { lintCrl } from '../src/pki/lint/crl-lint.ts';
import { verifyCrl } from '../src/crl/verify-crl.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';

const SIZES = scaled([10_000, 100_000, 1_000_000], [10_000, 100_000]);
const rows: (string | number)[][] = [];
const now = new Date();
const created = await createDeviceCa({ now: new Date(now.getTime() - 86_400_000) });
const ca = await deviceCaFromPem(created.certPem, created.keyPem);
const authority = crlAuthorityFor(ca);
const profile = caLintProfile(ca.certDer);

const best = (runs: number, fn: () => void) => {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    min = Math.min(min, performance.now() - t);
  }
  return min;
};

console.log(`node ${process.version}, EC P-256 CA; best of 3`);
console.log('entries   |      MB | lint ms | ns/entry | verifyCrl ms | lint/verify');
console.log('----------|---------|---------|----------|--------------|------------');
for (const n of SIZES) {
  const serials: string[] = [];
  for (let i = 0; i < n; i++) {
    const b = randomBytes(20);
    b[0] = (b[0] & 0x3f) | 0x40;
    serials.push(b.toString('hex'));
  }
  serials.sort();
  const enc = createRevokedEntriesEncoder();
  const revokedAt = new Date(now.getTime() - 60_000);
  for (let i = 0; i < n; i++) enc.add({ serialHex: serials[i], revokedAt, reasonCode: [0, 1, 4, 5][i % 4] });
  const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const der = buildCrl({
    issuerNameDer: authority.issuerNameDer,
    authorityKeyId: authority.authorityKeyId,
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + 7 * 86_400_000),
    crlNumber: 2n,
    distributionPointUrl: 'http://certfleet.test/pki/crl',
    revoked: enc.finish(),
    signer: authority.signer,
  });
  const lintMs = best(3, () => lintCrl(der, { ca: profile, previousNumber: 1n }));
  const verifyMs = best(3, () => verifyCrl(der, { caPublicKey: authority.publicKey, now, previousNumber: 1n, issuerNameDer: authority.issuerNameDer }));
  console.log(
    `${String(n).padEnd(9)} | ${(der.length / 1e6).toFixed(1).padStart(7)} | ${lintMs.toFixed(0).padStart(7)} | ${((lintMs * 1e6) / n).toFixed(0).padStart(8)} | ${verifyMs.toFixed(0).padStart(12)} | ${(lintMs / verifyMs).toFixed(2).padStart(10)}`,
  );
  rows.push([n, round(der.length / 1e6), round(lintMs), round((lintMs * 1e6) / n, 0), round(verifyMs), ratio(lintMs, verifyMs)]);
}
emitTable({
  id: 'crl-lint',
  title: 'CRL lint before publication',
  description: 'lintCrl (src/pki/lint: header via @peculiar/asn1-x509, entries in one linear pass) against verifyCrl, its peer already run on every publication, on the same CRL (EC P-256 CA, best of 3).',
  columns: ['entries', 'MB', 'lint ms', 'ns per entry', 'verifyCrl ms', 'lint / verifyCrl'],
  rows,
});
