/**
 * The CRL hash folder (src/broker/crl-hash-links.ts): `<hash>.r0` links to the CRL file beside
 * it, made atomically, exactly the CAs asked for; the broker agent's Mosquitto target keeps them
 * after each CRL write (before the reload) when broker-config made the folder; a broker-config
 * run with --crl-layout crlfile removes the folder (serve and the agent then stop keeping it).
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crlFileTarget } from '../src/broker/agent/crl-targets.ts';
import { createBrokerTrustFiles } from '../src/crl/broker-trust-files.ts';
import { silentLogger } from '../src/support/logger.ts';
import type { CheckedCrl } from '../src/broker/agent/bundle-check.ts';
import { crlHashDirFor, syncCrlHashLinks } from '../src/broker/crl-hash-links.ts';
import { renderCrlPlaceholder, CRL_PLACEHOLDER_ISSUER } from '../src/broker/crl-placeholder.ts';
import { buildCrl } from '../src/crl/build-crl.ts';
import { crlDerToPem, crlPemToDer } from '../src/crl/verify-crl.ts';
import { oid, sequence, set, utf8String } from '../src/domain/der.ts';
import { createCrlSigner } from '../src/pki/crl-signer.ts';
import { crlIssuerHash, subjectHash } from '../src/pki/subject-hash.ts';
import { x509 } from '../src/pki/x509.ts';

const root = mkdtempSync(join(tmpdir(), 'certfleet-crl-hash-links-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function crlOf(cn: string): CheckedCrl {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const thisUpdate = new Date();
  const der = buildCrl({
    issuerNameDer: sequence(set(sequence(oid('2.5.4.3'), utf8String(cn)))),
    authorityKeyId: Buffer.alloc(20, cn.length),
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + 86_400_000),
    crlNumber: 1n,
    signer: createCrlSigner(ec.privateKey),
    revoked: new Uint8Array(0),
  });
  return { issuerKeyId: cn, crlNumber: 1n, thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 86_400_000), der };
}

describe('syncCrlHashLinks', () => {
  it('makes exactly one relative <hash>.r0 link per hash to the CRL file, and removes the others (also a stray .r1)', async () => {
    const crl = join(root, 'a', 'device-crl.pem');
    mkdirSync(join(root, 'a'));
    const dir = crlHashDirFor(crl);
    expect(await syncCrlHashLinks(dir, crl, ['0000000a', '0000000b'])).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['0000000a.r0', '0000000b.r0']);
    for (const n of readdirSync(dir)) expect(readlinkSync(join(dir, n))).toBe('../device-crl.pem');
    expect(await syncCrlHashLinks(dir, crl, ['0000000a', '0000000b'])).toBe(false); // nothing to do
    writeFileSync(join(dir, '0000000a.r1'), 'stray');
    writeFileSync(join(dir, '0000000a.r0.keep'), 'not ours'); // names other than <8 hex>.r<n> are never touched
    expect(await syncCrlHashLinks(dir, crl, ['0000000a'])).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['0000000a.r0', '0000000a.r0.keep']);
    // A regular file (or a link elsewhere) under a wanted name is replaced by the link.
    rmSync(join(dir, '0000000a.r0'));
    symlinkSync('/elsewhere.pem', join(dir, '0000000a.r0'));
    expect(await syncCrlHashLinks(dir, crl, ['0000000a'], { prune: false })).toBe(true);
    expect(readlinkSync(join(dir, '0000000a.r0'))).toBe('../device-crl.pem');
    await expect(syncCrlHashLinks(dir, crl, ['../x'])).rejects.toThrow(/not a subject hash/);
    await expect(syncCrlHashLinks(join(root, 'elsewhere'), crl, ['0000000a'])).rejects.toThrow(/beside/);
  });
});

describe("the broker agent's Mosquitto target", () => {
  it('keeps a link per CA of the bundle when the hash folder exists, after writing the CRL file', async () => {
    const file = join(root, 'agent', 'device-crl.pem');
    mkdirSync(crlHashDirFor(file), { recursive: true });
    const target = crlFileTarget(file);
    expect(target.description).toMatch(/capath/);
    const [a, b] = [crlOf('Agent CA one'), crlOf('Agent CA two')];
    const bundle = crlDerToPem(a.der) + crlDerToPem(b.der);
    await target.write([a, b], bundle);
    expect(readFileSync(file, 'latin1')).toBe(bundle);
    const dir = crlHashDirFor(file);
    expect(readdirSync(dir).sort()).toEqual([`${crlIssuerHash(a.der)}.r0`, `${crlIssuerHash(b.der)}.r0`].sort());
    // CA two's CRL leaves the bundle: its link goes.
    await target.write([a], crlDerToPem(a.der));
    expect(readdirSync(dir)).toEqual([`${crlIssuerHash(a.der)}.r0`]);
    expect(lstatSync(join(dir, readdirSync(dir)[0]!)).isSymbolicLink()).toBe(true);
  });

  it('without the folder: the crlfile only, no folder made', async () => {
    const file = join(root, 'plain', 'device-crl.pem');
    mkdirSync(join(root, 'plain'));
    const target = crlFileTarget(file);
    expect(target.description).toBe(`crlfile ${file}`);
    const a = crlOf('Plain CA');
    await target.write([a], crlDerToPem(a.der));
    expect(existsSync(crlHashDirFor(file))).toBe(false);
  });
});

describe('the placeholder crlfile', () => {
  it('is an empty CRL of no CA, valid for decades', () => {
    const crl = new x509.X509Crl(new Uint8Array(crlPemToDer(renderCrlPlaceholder())));
    expect(crl.issuerName.getField('CN')[0]).toBe(CRL_PLACEHOLDER_ISSUER);
    expect(crl.entries).toHaveLength(0);
    expect(crl.nextUpdate!.getTime()).toBeGreaterThan(Date.now() + 50 * 365 * 86_400_000);
  });
});

describe('broker-config: the CRL layouts', () => {
  it('capath by default (placeholder crlfile, a link for the CA); --crl-layout crlfile renders the CRL file itself and removes the folder', async () => {
    const ca = await createDeviceCa({ now: new Date(), commonName: 'Layout Device CA' });
    const crlPath = join(root, 'layout', 'crl', 'device-crl.pem');
    mkdirSync(join(root, 'layout', 'crl'), { recursive: true });
    const outDir = join(root, 'layout', 'broker');
    const capath = await writeBrokerConfig({ outDir, deviceCaCertPem: ca.certPem, crlPath, acl: { permissive: true } });
    const conf = readFileSync(capath.files.config, 'utf8');
    expect(conf).toContain(`\ncapath ${crlPath}.hash\n`);
    expect(conf).toContain(`\ncrlfile ${join(outDir, 'crl-placeholder.pem')}\n`);
    expect(capath.files).toMatchObject({ crlHashDir: `${crlPath}.hash`, crlPlaceholder: join(outDir, 'crl-placeholder.pem') });
    expect(readdirSync(`${crlPath}.hash`)).toEqual([`${subjectHash(new X509Certificate(ca.certPem).raw)}.r0`]);
    const placeholder = readFileSync(join(outDir, 'crl-placeholder.pem'), 'latin1');
    // Run again: the placeholder is kept as it is (the broker's file never changes), a link certfleet added stays.
    await syncCrlHashLinks(`${crlPath}.hash`, crlPath, ['0badc0de', subjectHash(new X509Certificate(ca.certPem).raw)]);
    await writeBrokerConfig({ outDir, deviceCaCertPem: ca.certPem, crlPath, acl: { permissive: true } });
    expect(readFileSync(join(outDir, 'crl-placeholder.pem'), 'latin1')).toBe(placeholder);
    expect(readdirSync(`${crlPath}.hash`)).toHaveLength(2);

    const single = await writeBrokerConfig({ outDir, deviceCaCertPem: ca.certPem, crlPath, crlLayout: 'crlfile', acl: { permissive: true } });
    const old = readFileSync(single.files.config, 'utf8');
    expect(old).toContain(`\ncrlfile ${crlPath}\n`);
    expect(old).not.toMatch(/^capath /m);
    expect(existsSync(`${crlPath}.hash`)).toBe(false);
    expect(single.lines.join('\n')).toMatch(/removed .*\.hash/);
  });
});

describe("serve's broker trust files keep the hash folder in the files' order", () => {
  it('at every reload every CA in the cafile has its link; a new CA gets it with its first CRL, a leaving CA loses it after the cafile', async () => {
    const dir = join(root, 'trust');
    mkdirSync(dir);
    const crlPath = join(dir, 'device-crl.pem');
    const caPath = join(dir, 'device-ca.crt');
    const hashDir = crlHashDirFor(crlPath);
    mkdirSync(hashDir);
    const [a, b, a2] = await Promise.all([createDeviceCa({ now: new Date(), commonName: 'Trust A' }), createDeviceCa({ now: new Date(), commonName: 'Trust B' }), createDeviceCa({ now: new Date(), commonName: 'Trust A' })]);
    const hashOf = (pem: string) => subjectHash(new X509Certificate(pem).raw);
    const member = (id: string, certPem: string) => ({ issuerKeyId: id, certPem });
    const seen: Array<{ cafile: string[]; links: string[] }> = [];
    const cafileHashes = () => (existsSync(caPath) ? (readFileSync(caPath, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(hashOf) : []);
    const reloader = {
      configured: true,
      description: 'test',
      async reload() {
        seen.push({ cafile: cafileHashes(), links: readdirSync(hashDir).filter((n) => n.endsWith('.r0')).map((n) => n.slice(0, 8)) });
      },
    };
    const trust = createBrokerTrustFiles({ crlPath, caPath, reloader, logger: silentLogger, hashDir });
    await trust.setMembers([member('a', a.certPem)]);
    writeFileSync(crlPath, 'CRL A'); // the one CA's pipeline writes CRL_OUTPUT_PATH, then reloads
    await trust.assembler.reload();
    expect(readdirSync(hashDir)).toEqual([`${hashOf(a.certPem)}.r0`]);
    // B staged: its link comes with its first CRL, before it enters the cafile.
    await trust.setMembers([member('a', a.certPem), member('b', b.certPem)]);
    writeFileSync(trust.crlPathFor('b'), 'CRL B');
    await trust.assembler.reload();
    expect(trust.inCaFile()).toEqual(['a', 'b']);
    expect(readdirSync(hashDir).sort()).toEqual([`${hashOf(a.certPem)}.r0`, `${hashOf(b.certPem)}.r0`].sort());
    // A rolled over to A2 (same name, same hash) and B revoked: one link stays for the name, B's goes after B left the cafile.
    await trust.setMembers([member('a', a.certPem), member('b', b.certPem), member('a2', a2.certPem)]);
    writeFileSync(trust.crlPathFor('a2'), 'CRL A2');
    await trust.assembler.reload();
    expect(trust.inCaFile()).toEqual(['a', 'b', 'a2']);
    await trust.setMembers([member('a2', a2.certPem)]);
    await trust.idle();
    expect(readdirSync(hashDir)).toEqual([`${hashOf(a2.certPem)}.r0`]);
    expect(trust.inCaFile()).toEqual(['a2']);
    for (const s of seen) for (const h of s.cafile) expect(s.links, JSON.stringify(s)).toContain(h);
    expect(seen.some((s) => s.cafile.includes(hashOf(b.certPem)))).toBe(true);
    expect(seen.at(-1)!.cafile).toEqual([hashOf(a2.certPem)]);
    for (const n of readdirSync(hashDir)) expect(readlinkSync(join(hashDir, n))).toBe('../device-crl.pem');
  });
});
