import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { crlAuthorityFor } from '../src/crl/publish-crl.ts';
import { createRevokedEntriesEncoder, prepareCrl } from '../src/crl/build-crl.ts';
import { lintCrl } from '../src/pki/lint/crl-lint.ts';
import { verifyCrl } from '../src/crl/verify-crl.ts';

const n = Number(process.argv[2] ?? 1_000_000);
for (const keyType of ['ec-p256', 'rsa-3072'] as const) {
  const created = await createDeviceCa({ now: new Date(Date.now() - 86400000), keyType });
  const ca = await deviceCaFromPem(created.certPem, created.keyPem);
  const k0 = performance.now();
  const a = crlAuthorityFor(ca);
  const authorityMs = performance.now() - k0;
  const enc = createRevokedEntriesEncoder();
  const at = new Date();
  for (let i = 0; i < n; i++) enc.add({ serialHex: (0x4000000000000000000000000000000000000000n + BigInt(i) * 7919n).toString(16), revokedAt: at, reasonCode: i % 3 === 0 ? 1 : 0 });
  const revoked = enc.finish();
  const fields = { issuerNameDer: a.issuerNameDer, authorityKeyId: a.authorityKeyId, thisUpdate: at, nextUpdate: new Date(at.getTime() + 7 * 86400000), crlNumber: 5n, revoked, algorithmIdentifierDer: a.signer.algorithmIdentifierDer };
  const opts = { ca: a.lintProfile, previousNumber: 4n };
  const verify = (der: Buffer) => verifyCrl(der, { caPublicKey: a.publicKey, now: new Date(), previousNumber: 4n });
  // before: CA signs (sync, one after the other), then lint, then verify
  const before = async () => {
    const f = prepareCrl(fields).signWith(a.signer);
    const s = prepareCrl({ ...fields, distributionPointUrl: 'http://x.test/pki/crl' }).signWith(a.signer);
    lintCrl(f, opts); verify(f);
    lintCrl(s, { ...opts, entriesLike: { der: f, entries: n } }); verify(s);
  };
  // after: throwaway copies (both at once), lint, CA signatures (both at once), verify
  const after = async () => {
    const pf = prepareCrl(fields);
    const ps = prepareCrl({ ...fields, distributionPointUrl: 'http://x.test/pki/crl' });
    const [cf, cs] = await Promise.all([pf.signWithAsync(a.lintSigner), ps.signWithAsync(a.lintSigner)]);
    lintCrl(cf, opts); lintCrl(cs, { ...opts, entriesLike: { der: cf, entries: n } });
    const [f, s] = await Promise.all([pf.signWithAsync(a.signer), ps.signWithAsync(a.signer)]);
    verify(f); verify(s);
  };
  const times: Record<string, number[]> = { before: [], after: [] };
  for (let r = 0; r < 5; r++) for (const [name, fn] of [['before', before], ['after', after]] as const) {
    const s = performance.now(); await fn(); times[name].push(performance.now() - s);
  }
  const med = (x: number[]) => x.sort((p, q) => p - q)[2];
  console.log(JSON.stringify({ keyType, entries: n, crlAuthorityForMs: Math.round(authorityMs), beforeMs: Math.round(med(times.before)), afterMs: Math.round(med(times.after)), ratio: (med(times.after) / med(times.before)).toFixed(2) }));
}
