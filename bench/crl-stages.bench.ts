/**
 * Where a revocation's publication spends its time before the broker file is on disk, stage by
 * stage, in one process (not a test):
 *
 *   node --import tsx bench/crl-stages.bench.ts      (or npm run bench)
 *
 * The stages of src/crl/publish-crl.ts on N listed entries plus one new revocation, with the real
 * code (merge, build, throwaway-key signature, lint, CA signature, verify, PEM, atomic file write
 * with fsync), without the database. Each stage is timed in wall-clock ms AND in CPU ms of the
 * process (process.cpuUsage, every thread: the signatures run in libuv's pool): on a shared,
 * overloaded machine the CPU figure is the one that compares across runs.
 *
 * Three paths, same run, same entries:
 * - before: both variants built, linted (the second compares its entries with the first), signed
 *   and verified before the file is written, the lint walking every entry (this repository up to
 *   the incremental-lint change);
 * - carried (2026-12-07 00:00): the file variant alone before the file (the served one is made while
 *   the file is written), its lint comparing the entries carried over with the CRL linted before
 *   (walking their headers) and linting only the new entry; lint copy signed over the whole TBS by
 *   the throwaway key; verify walking every entry; PEM in blocks spread in place, a new buffer each time;
 * - now: what publish-crl.ts does since: the lint copy carries a placeholder throwaway signature
 *   (no hash), carried runs checked by the earlier lint's entry offsets (not walked), the CA
 *   signature, then the verification's hash in the thread pool while the real crl-file-sync.ts makes
 *   the one-pass PEM into its kept buffer and writes the temp file (the rename waits for it).
 * The floor: SHA-256 once over the CRL and its PEM file written (temp file, fsync, rename, fsync of the folder).
 * BENCH_STAGES_SIZES (comma-separated) picks the sizes; median of BENCH_STAGES_REPEAT (5) runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRevokedEntriesEncoder, prepareCrl, revokedList, type SortedEntries, type TbsInput } from '../src/crl/build-crl.ts';
import { createCrlFileSync } from '../src/crl/crl-file-sync.ts';
import { verifyCrlAsync } from '../src/crl/verify-crl.ts';
import { throwawaySignerFor } from '../src/pki/crl-signer.ts';
import { createBrokerReloader } from '../src/broker/broker-reloader.ts';
import { silentLogger } from '../src/support/logger.ts';
import { mergeEntries } from '../src/crl/incremental-entries.ts';
import { crlAuthorityFor, type CrlAuthority } from '../src/crl/publish-crl.ts';
import { crlDerToPemBytes, crlPemByteLength, verifyCrl } from '../src/crl/verify-crl.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { lintCrl, type CrlLintOptions } from '../src/pki/lint/crl-lint.ts';
import { fsyncDir, writeNewFileDurably } from '../src/support/atomic-file.ts';
import { rename } from 'node:fs/promises';
import { emitTable, round, scaled } from './support/results.ts';

const list = (v: string | undefined) => (v === undefined ? undefined : v.split(',').filter(Boolean).map(Number));
const SIZES = list(process.env.BENCH_STAGES_SIZES) ?? scaled([100_000, 1_000_000], [10_000]);
const REPEAT = Number(process.env.BENCH_STAGES_REPEAT ?? 5);

type Timed = { wall: number; cpu: number };
async function timed<T>(fn: () => T | Promise<T>): Promise<[T, Timed]> {
  const c = process.cpuUsage();
  const t = performance.now();
  const value = await fn();
  const wall = performance.now() - t;
  const d = process.cpuUsage(c);
  return [value, { wall, cpu: (d.user + d.system) / 1000 }];
}

function entriesOf(n: number, now: number): SortedEntries {
  const encoder = createRevokedEntriesEncoder({ times: true });
  const serials = randomBytes(n * 20);
  for (let i = 0; i < n; i++) {
    serials[i * 20] = 0x40 | (serials[i * 20]! & 0x3f);
    encoder.add({ serialHex: serials.subarray(i * 20, i * 20 + 20).toString('hex'), revokedAt: new Date(now - (i % 2_592_000) * 1000), reasonCode: [0, 1, 4, 5][i % 4]!, notAfterMs: now + 365 * 86_400_000 });
  }
  return encoder.finishSorted();
}

/** The PEM encoder before this change (base64 in blocks, lines spread apart in place, a new buffer each time). */
function legacyPem(label: string, der: Uint8Array): Buffer {
  const src = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const header = `-----BEGIN ${label}-----\n`;
  const footer = `-----END ${label}-----\n`;
  const b64Length = Math.ceil(src.length / 3) * 4;
  const lineCount = Math.ceil(b64Length / 64);
  const out = Buffer.allocUnsafe(header.length + b64Length + lineCount + footer.length);
  const body = out.write(header, 0, 'latin1');
  const BLOCK = 48 * 16_384;
  for (let i = 0; i < src.length; i += BLOCK) {
    const start = body + (i / 48) * 65;
    const chars = out.write(src.toString('base64', i, Math.min(src.length, i + BLOCK)), start, 'latin1');
    for (let k = Math.ceil(chars / 64) - 1; k >= 0; k--) {
      const from = start + k * 64;
      const to = Math.min(from + 64, start + chars);
      out.copyWithin(start + k * 65, from, to);
      out[start + k * 65 + (to - from)] = 0x0a;
    }
  }
  out.write(footer, body + b64Length + lineCount, 'latin1');
  return out;
}

async function writePem(path: string, der: Uint8Array) {
  const pem = legacyPem('X509 CRL', der);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeNewFileDurably(tmp, pem, 0o644);
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

/** Build, lint a throwaway-signed copy, sign with the CA key, verify: one variant. */
async function variant(authority: CrlAuthority, fields: TbsInput, lint: CrlLintOptions, entries: number, now: Date) {
  const t: Record<string, Timed> = {};
  const [tbs, build] = await timed(() => prepareCrl(fields));
  const [copy, throwaway] = await timed(() => tbs.signWithAsync(authority.lintSigner));
  const [, linted] = await timed(() => lintCrl(copy, lint));
  const [der, sign] = await timed(() => tbs.signWithAsync(authority.signer));
  const [verified, verify] = await timed(() => verifyCrl(der, { caPublicKey: authority.publicKey, now, issuerNameDer: authority.issuerNameDer, previousNumber: lint.previousNumber }));
  if (verified.entryCount !== entries) throw new Error('entry count');
  Object.assign(t, { build, throwaway, lint: linted, sign, verify });
  return { der, t };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const created = await createDeviceCa({ now: new Date(Date.now() - 86_400_000) });
const ca = await deviceCaFromPem(created.certPem, created.keyPem);
const authority = crlAuthorityFor(ca);
/** The paths before this change: the lint copy signed over the whole TBS by the throwaway key. */
const legacyAuthority: CrlAuthority = { ...authority, lintSigner: throwawaySignerFor(ca.signer.publicKey) };
const dir = mkdtempSync(join(tmpdir(), 'crl-stages-'));
const rows: (string | number)[][] = [];
try {
  for (const size of SIZES) {
    const nowMs = Math.floor(Date.now() / 1000) * 1000;
    const prev = entriesOf(size, nowMs - 60_000);
    const base = (revoked: Uint8Array, n: bigint, thisUpdate: Date): TbsInput => ({
      issuerNameDer: authority.issuerNameDer,
      authorityKeyId: authority.authorityKeyId,
      thisUpdate,
      nextUpdate: new Date(thisUpdate.getTime() + 7 * 86_400_000),
      crlNumber: n,
      revoked,
      algorithmIdentifierDer: authority.signer.algorithmIdentifierDer,
    });
    const lintOptions = { ca: authority.lintProfile, previousNumber: 1n };
    // The previous publication's file variant, linted in full: what the next incremental lint compares with.
    const previousCrl = (await variant(legacyAuthority, base(prev.bytes, 1n, new Date(nowMs - 60_000)), { ca: authority.lintProfile, previousNumber: 0n }, size, new Date())).der;
    const list = revokedList(previousCrl)!;
    const previousList = previousCrl.subarray(list.valueStart, list.end);
    const samples: Record<string, Timed[]> = {};
    const pemOut = Buffer.allocUnsafe(crlPemByteLength(previousCrl.length + 4096));
    const fileSync = createCrlFileSync({ path: join(dir, `now-${size}.pem`), caPublicKey: authority.publicKey, issuerNameDer: authority.issuerNameDer, clock: { now: () => new Date(nowMs) }, reloader: createBrokerReloader(), logger: silentLogger });
    // Warm the file sync's kept PEM buffer and the file (a running server has both after its first publication).
    await fileSync.sync({ crlNumber: 1n, der: previousCrl, verified: true });
    const add = (k: string, v: Timed) => (samples[k] ??= []).push(v);
    for (let r = 0; r < REPEAT; r++) {
      const now = new Date(nowMs);
      const added = entriesOf(1, nowMs);
      const [merged, merge] = await timed(() => mergeEntries(prev, added, null));
      add('merge', merge);
      const fields = base(merged.entries.bytes, 2n + BigInt(r), now);
      const count = merged.entries.offsets.length;
      // before: full lint of the file variant, then the served variant, then the file
      const fileFull = await variant(legacyAuthority, fields, lintOptions, count, now);
      for (const [k, v] of Object.entries(fileFull.t)) add(`full:${k}`, v);
      const served = await variant(legacyAuthority, { ...fields, distributionPointUrl: 'https://certfleet.example/pki/crl' }, { ...lintOptions, entriesLike: { der: fileFull.der, entries: count } }, count, now);
      add('served', { wall: Object.values(served.t).reduce((a, b) => a + b.wall, 0), cpu: Object.values(served.t).reduce((a, b) => a + b.cpu, 0) });
      const [, pem] = await timed(() => legacyPem('X509 CRL', fileFull.der));
      add('pem', pem);
      const [, pemNow] = await timed(() => crlDerToPemBytes(fileFull.der, pemOut));
      add('pem:now', pemNow);
      const [, write] = await timed(() => writePem(join(dir, 'crl.pem'), fileFull.der));
      add('write', write);
      // now: the file variant with the carried lint
      const fileCarried = await variant(legacyAuthority, fields, { ...lintOptions, carried: { previous: previousList, runs: merged.carried } }, count, now);
      add('carried:lint', fileCarried.t.lint!);
      // now: publish-crl.ts's path to the file, end to end (merge included), with the real file sync.
      const [, toFile] = await timed(async () => {
        const m2 = mergeEntries(prev, added, null);
        const tbs = prepareCrl(base(m2.entries.bytes, 100n + BigInt(r), now));
        const copy = await tbs.signWithAsync(authority.lintSigner);
        const linted = lintCrl(copy, { ...lintOptions, carried: { previous: previousList, previousOffsets: prev.offsets, runs: m2.carried }, offsets: m2.entries.offsets });
        if (linted.entries !== count || !linted.offsetsChecked) throw new Error('carried lint');
        const der = await tbs.signWithAsync(authority.signer);
        const verifying = verifyCrlAsync(der, { caPublicKey: authority.publicKey, now, issuerNameDer: authority.issuerNameDer, previousNumber: lintOptions.previousNumber, lintedEntryCount: linted.entries });
        verifying.catch(() => undefined);
        const written = await fileSync.sync({ crlNumber: 100n + BigInt(r), der, verified: verifying });
        await verifying;
        if (written.file !== 'written') throw new Error(`file ${written.file}`);
      });
      add('now:to-file', toFile);
      const [, hash] = await timed(() => createHash('sha256').update(fileFull.der).digest());
      add('floor:hash', hash);
    }
    const m = (k: string, f: 'wall' | 'cpu') => median(samples[k]!.map((s) => s[f]));
    const stages = ['build', 'throwaway', 'lint', 'sign', 'verify'];
    const fileVariant = (f: 'wall' | 'cpu', lint: string) => stages.reduce((a, s) => a + m(s === 'lint' ? lint : `full:${s}`, f), 0);
    // The PEM is made inside the write (crl-file-sync.ts); "write" includes it.
    const before = (f: 'wall' | 'cpu') => m('merge', f) + fileVariant(f, 'full:lint') + m('served', f) + m('write', f);
    const carriedPath = (f: 'wall' | 'cpu') => m('merge', f) + fileVariant(f, 'carried:lint') + m('write', f);
    const floor = (f: 'wall' | 'cpu') => m('floor:hash', f) + m('write', f) - m('pem', f);
    const cell = (k: string) => `${round(m(k, 'cpu'), 1)} / ${round(m(k, 'wall'), 1)}`;
    const row = [
      size,
      round(previousCrl.length / 1e6, 1),
      cell('merge'),
      cell('full:build'),
      cell('full:throwaway'),
      cell('full:lint'),
      cell('carried:lint'),
      cell('full:sign'),
      cell('full:verify'),
      cell('served'),
      cell('pem'),
      cell('pem:now'),
      cell('write'),
      `${round(before('cpu'), 0)} / ${round(before('wall'), 0)}`,
      `${round(carriedPath('cpu'), 0)} / ${round(carriedPath('wall'), 0)}`,
      cell('now:to-file'),
      `${round(floor('cpu'), 0)} / ${round(floor('wall'), 0)}`,
      round(loadavg()[0], 1),
    ];
    console.log(row.join(' | '));
    rows.push(row);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
emitTable({
  id: 'crl-stages',
  title: 'Revocation → CRL file: the publication stages, CPU / wall ms (in process, no database)',
  description:
    '`bench/crl-stages.bench.ts`: the real stages of `src/crl/publish-crl.ts` on N listed entries plus one new revocation (EC P-256 CA), median of 5; each cell is CPU ms of the process (all threads) / wall ms. ' +
    '"before" is the path to the file before the incremental lint (both variants built, linted with every entry walked, signed and verified before the file is written); "carried" is the file variant alone with the carried-entries lint walking every carried header, a throwaway signature over the whole TBS, verify walking every entry and the PEM spread in place (2026-12-07 00:00); "now" is publish-crl.ts\'s path since, timed end to end (merge, build, placeholder lint signature, lint by the earlier entry offsets, CA signature, then the verification in the thread pool while the real crl-file-sync.ts makes the one-pass PEM into its kept buffer and writes, renames and fsyncs). ' +
    'The floor: SHA-256 once over the CRL plus writing its PEM file (temp file, fsync, rename, fsync of the folder), without making the PEM. "write" includes making the PEM (its own column). The database read of the new row, the store and the HTTP request are not in these figures.',
  columns: ['listed', 'CRL MB', 'merge', 'build (copy)', 'throwaway signature', 'lint, every entry', 'lint, carried entries (walked)', 'CA signature', 'verify', 'served variant (all stages)', 'PEM (before)', 'PEM (now, kept buffer)', 'write file (with PEM before)', 'to file, before', 'to file, carried', 'to file, now (end to end)', 'floor: hash + write', 'load avg'],
  rows,
});
