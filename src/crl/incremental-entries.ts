/**
 * The incremental part of a CRL build (pure; no I/O, no clock): a CA's last published entries,
 * kept in memory in their encoded, sorted form (SortedEntries: the DER of each revokedCertificate
 * entry in the CRL's order, with each entry's revocation and notAfter seconds), merged with the
 * entries newly read (sorted by the same encoder) while the entries whose retention ended are
 * dropped. The work is a few big copies (memcpy) and one linear pass over two number arrays: no
 * entry is decoded, re-encoded or re-sorted.
 *
 * The result is byte-identical to a full read by construction only if the entries in memory were:
 * publish-crl.ts compares the two periodically (and the property test does, on random sequences).
 */
import { stripEntryExtensions, type SortedEntries } from './build-crl.ts';

/** An empty entries list. */
export const noEntries = (): SortedEntries => ({ bytes: Buffer.alloc(0), offsets: new Uint32Array(0), revokedAt: new Float64Array(0), notAfter: new Float64Array(0) });

/**
 * Serial order of entry `i` of `a` against entry `j` of `b` (entries as the encoder writes them:
 * `30 L 02 sl <serial>`, short-form lengths): minimal positive INTEGERs compare by length, then bytewise.
 */
function compareEntries(a: SortedEntries, i: number, b: SortedEntries, j: number): number {
  const x = a.offsets[i];
  const y = b.offsets[j];
  const la = a.bytes[x + 3];
  const lb = b.bytes[y + 3];
  if (la !== lb) return la - lb;
  for (let k = 4; k < 4 + la; k++) {
    const d = a.bytes[x + k] - b.bytes[y + k];
    if (d !== 0) return d;
  }
  return 0;
}

const entryEnd = (e: SortedEntries, i: number) => (i + 1 < e.offsets.length ? e.offsets[i + 1] : e.bytes.length);

/** First index of `prev` whose serial is not below entry `j` of `added` (binary search). */
function lowerBound(prev: SortedEntries, added: SortedEntries, j: number, from: number): number {
  let lo = from;
  let hi = prev.offsets.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareEntries(prev, mid, added, j) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Whether an entry leaves the CRL built after a CRL whose thisUpdate was `previousThisUpdate`
 * (whole seconds): its certificate expired before that CRL and it was revoked before it (so that
 * CRL listed it after its notAfter, RFC 5280 3.3). The same rule as the database read's.
 */
export const retentionEnded = (revokedAt: number, notAfter: number, previousThisUpdate: number): boolean =>
  notAfter < previousThisUpdate && revokedAt < previousThisUpdate;

/** Reusable memory for merges: a merge writes here, and the list it replaced becomes the next spare. */
export interface MergeSpace {
  bytes: Buffer;
  offsets: Uint32Array;
  revokedAt: Float64Array;
  notAfter: Float64Array;
}

/** Room for `bytes`/`count` in `space` (grown by a quarter above the need, so a growing CRL is not reallocated every time). */
function withRoom(space: MergeSpace | null, bytes: number, count: number): MergeSpace {
  const b = space && space.bytes.length >= bytes ? space.bytes : Buffer.allocUnsafeSlow(Math.ceil(bytes * 1.25) + 4096);
  const fits = space && space.offsets.length >= count;
  const n = Math.ceil(count * 1.25) + 64;
  return {
    bytes: b,
    offsets: fits ? space.offsets : new Uint32Array(n),
    revokedAt: fits ? space.revokedAt : new Float64Array(n),
    notAfter: fits ? space.notAfter : new Float64Array(n),
  };
}

export interface MergeResult {
  entries: SortedEntries;
  /** Entries of `added` that were not listed before (a serial already listed is replaced: the database row is the truth). */
  inserted: number;
  replaced: number;
  dropped: number;
  /**
   * Where the result's bytes came from `prev`: triples [at, end, from] (result bytes [at, end) are
   * prev.bytes[from, from + end - at)), ascending; every other byte belongs to an entry of `added`.
   * The lint checks these runs against the CRL it linted before instead of linting them again
   * (CarriedEntries in src/pki/lint/crl-lint.ts).
   */
  carried: Uint32Array;
}

/**
 * Where a merge writes, and how far it got. The copy steps are plain functions over this state,
 * not closures made by each merge: a merge runs once per publication, and optimized code that
 * calls the closures of one call is thrown away at the next (another closure: "wrong call
 * target") and its loops run unoptimized again while it is recompiled, every publication.
 */
interface MergeWriter {
  bytes: Buffer;
  offsets: Uint32Array;
  revokedAt: Float64Array;
  notAfter: Float64Array;
  /** Carried runs so far: [at, end, from] triples (MergeResult.carried). */
  runs: number[];
  /** Entries written. */
  w: number;
  /** Bytes written. */
  wb: number;
  /** Indexes of `prev` left out (ascending), and the next one to skip. */
  gone: number[];
  g: number;
}

/** Copies prev's entries [from, to) in one go. */
function copyPrev(prev: SortedEntries, o: MergeWriter, from: number, to: number): void {
  if (to <= from) return;
  const start = prev.offsets[from];
  const end = entryEnd(prev, to - 1);
  const wb = o.wb;
  const w = o.w;
  prev.bytes.copy(o.bytes, wb, start, end);
  // Contiguous with the previous run in both lists: one run.
  const runs = o.runs;
  const n = runs.length;
  if (n > 0 && runs[n - 2] === wb && runs[n - 1]! + (runs[n - 2]! - runs[n - 3]!) === start) runs[n - 2] = wb + end - start;
  else runs.push(wb, wb + end - start, start);
  const delta = wb - start;
  const source = prev.offsets;
  const target = o.offsets;
  for (let i = from; i < to; i++) target[w + i - from] = source[i] + delta;
  o.revokedAt.set(prev.revokedAt.subarray(from, to), w);
  o.notAfter.set(prev.notAfter.subarray(from, to), w);
  o.w = w + (to - from);
  o.wb = wb + (end - start);
}

/** Copies prev's entries [from, to) except the gone ones. */
function copyKept(prev: SortedEntries, o: MergeWriter, from: number, to: number): void {
  const gone = o.gone;
  let i = from;
  while (o.g < gone.length && gone[o.g] < to) {
    copyPrev(prev, o, i, gone[o.g]);
    i = gone[o.g] + 1;
    o.g++;
  }
  copyPrev(prev, o, i, to);
}

/**
 * `prev` without the entries whose retention ended before `previousThisUpdate` (null: none ends),
 * with `added` merged in (sorted and unique, as the encoder's finishSorted gives them). An entry of
 * `added` whose serial `prev` lists replaces it. Writes into `space` when it has room (the caller
 * then must not use the list `space` held); never into `prev`'s memory.
 */
export function mergeEntries(prev: SortedEntries, added: SortedEntries, previousThisUpdate: number | null, space: MergeSpace | null = null): MergeResult {
  const n = prev.offsets.length;
  const m = added.offsets.length;

  // Which old entries go: expired ones, and those an added entry replaces. Usually none.
  const dropped: number[] = [];
  if (previousThisUpdate !== null) {
    const { revokedAt, notAfter } = prev;
    for (let i = 0; i < n; i++) if (notAfter[i] < previousThisUpdate && revokedAt[i] < previousThisUpdate) dropped.push(i);
  }
  const expired = dropped.length;
  // Where each added entry goes in prev, and whether it replaces the entry there.
  const at = new Uint32Array(m);
  let replaced = 0;
  const replacing: number[] = [];
  for (let j = 0, from = 0; j < m; j++) {
    const i = lowerBound(prev, added, j, from);
    at[j] = i;
    from = i;
    if (i < n && compareEntries(prev, i, added, j) === 0) {
      replacing.push(i);
      replaced++;
    }
  }
  let gone = dropped;
  if (replacing.length > 0) {
    gone = [...new Set([...dropped, ...replacing])].sort((a, b) => a - b);
  }
  let goneBytes = 0;
  for (const i of gone) goneBytes += entryEnd(prev, i) - prev.offsets[i];

  const count = n - gone.length + m;
  const byteLength = prev.bytes.length - goneBytes + added.bytes.length;
  const out = withRoom(space === null || space.bytes.buffer === prev.bytes.buffer ? null : space, byteLength, count);
  const bytes = out.bytes.subarray(0, byteLength);
  const offsets = out.offsets.subarray(0, count);
  const revokedAt = out.revokedAt.subarray(0, count);
  const notAfter = out.notAfter.subarray(0, count);

  const writer: MergeWriter = { bytes, offsets, revokedAt, notAfter, runs: [], w: 0, wb: 0, gone, g: 0 };
  let i = 0;
  for (let j = 0; j < m; j++) {
    copyKept(prev, writer, i, at[j]);
    i = at[j];
    const start = added.offsets[j];
    const end = entryEnd(added, j);
    added.bytes.copy(bytes, writer.wb, start, end);
    offsets[writer.w] = writer.wb;
    revokedAt[writer.w] = added.revokedAt[j];
    notAfter[writer.w] = added.notAfter[j];
    writer.w++;
    writer.wb += end - start;
  }
  copyKept(prev, writer, i, n);
  const { w, wb, runs } = writer;
  if (w !== count || wb !== byteLength) throw new Error(`entries merge wrote ${w} entries / ${wb} bytes, expected ${count} / ${byteLength}`);
  return { entries: { bytes, offsets, revokedAt, notAfter }, inserted: m - replaced, replaced, dropped: expired, carried: Uint32Array.from(runs) };
}

/** The memory a list uses, for a later merge to write into (when it no longer is the current list). */
export const spaceOf = (e: SortedEntries): MergeSpace => ({
  bytes: Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.buffer.byteLength - e.bytes.byteOffset),
  offsets: new Uint32Array(e.offsets.buffer, e.offsets.byteOffset, (e.offsets.buffer.byteLength - e.offsets.byteOffset) / 4),
  revokedAt: new Float64Array(e.revokedAt.buffer, e.revokedAt.byteOffset, (e.revokedAt.buffer.byteLength - e.revokedAt.byteOffset) / 8),
  notAfter: new Float64Array(e.notAfter.buffer, e.notAfter.byteOffset, (e.notAfter.buffer.byteLength - e.notAfter.byteOffset) / 8),
});

// ---------------------------------------------------------------------------------------------
// The broker file's entries: the same entries without crlEntryExtensions
// ---------------------------------------------------------------------------------------------

/** The broker file variant's entries (stripEntryExtensions of a SortedEntries list) and where each starts. */
export interface FileEntries {
  bytes: Buffer;
  offsets: Uint32Array;
}

/** Memory a file entries list is written into (the list before the previous one). */
export interface FileSpace {
  bytes: Buffer;
  offsets: Uint32Array;
}

function fileRoom(space: FileSpace | null | undefined, bytes: number, count: number): FileSpace {
  return {
    bytes: space && space.bytes.length >= bytes ? space.bytes : Buffer.allocUnsafeSlow(Math.ceil(bytes * 1.25) + 4096),
    offsets: space && space.offsets.length >= count ? space.offsets : new Uint32Array(Math.ceil(count * 1.25) + 64),
  };
}

/** Every entry of the `n` entries `bytes` without its extensions (a full read: one pass over the list). */
export function fileEntriesOf(bytes: Uint8Array, n: number, space?: FileSpace | null): FileEntries {
  const out = fileRoom(space, bytes.length, n);
  const { end, count } = stripEntryExtensions(bytes, 0, bytes.length, out.bytes, 0, out.offsets, 0, 0);
  if (count !== n) throw new Error(`stripped ${count} entries, expected ${n}`);
  return { bytes: out.bytes.subarray(0, end), offsets: out.offsets.subarray(0, n) };
}

/** Index of `value` in the ascending `sorted`, or -1. */
function indexOfSorted(sorted: Uint32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo] === value ? lo : -1;
}

/**
 * The file entries of a merge's result, from the previous file list: each run the merge carried
 * over from `prev` (MergeResult.carried) is the same whole entries in `prevFile` (the file list
 * published with `prev`, entry for entry: `prevFile.offsets[k]` is where prev's entry k starts
 * there), copied in one go with its offsets shifted; only the other entries (the new revocations)
 * are stripped. Work: a copy and one pass over the offsets, as the merge. Returns the file list's
 * own carried runs (the same [at, end, from] triples, against `prevFile.list`), for the lint.
 * Throws when a run does not start and end on entries of `prev` (memory is not what it claims:
 * the caller reads everything instead).
 */
export function mergeFileEntries(
  prev: SortedEntries,
  prevFile: { list: Uint8Array; offsets: Uint32Array },
  merged: MergeResult,
  space?: FileSpace | null,
): { entries: FileEntries; carried: Uint32Array } {
  const n = prev.offsets.length;
  if (prevFile.offsets.length !== n) throw new Error(`the file list has ${prevFile.offsets.length} entries, the served one ${n}`);
  const next = merged.entries;
  const m = next.offsets.length;
  const out = fileRoom(space === undefined || space === null || space.bytes.buffer === prevFile.list.buffer ? null : space, next.bytes.length, m);
  const runs: number[] = [];
  let wb = 0;
  let w = 0;
  let pos = 0;
  const { carried } = merged;
  for (let r = 0; r < carried.length; r += 3) {
    const at = carried[r];
    const end = carried[r + 1];
    const from = carried[r + 2];
    // The entries between carried runs (the new ones) are stripped (no closure for this: see MergeWriter).
    if (at > pos) {
      const stripped = stripEntryExtensions(next.bytes, pos, at, out.bytes, wb, out.offsets, w, 0);
      wb = stripped.end;
      w += stripped.count;
    }
    const first = indexOfSorted(prev.offsets, from);
    const last = from + (end - at) === prev.bytes.length ? n : indexOfSorted(prev.offsets, from + (end - at));
    if (first < 0 || last <= first) throw new Error(`carried run ${r / 3} does not start and end on entries of the previous list`);
    const fileFrom = prevFile.offsets[first];
    const fileEnd = last === n ? prevFile.list.length : prevFile.offsets[last];
    out.bytes.set(prevFile.list.subarray(fileFrom, fileEnd), wb);
    runs.push(wb, wb + fileEnd - fileFrom, fileFrom);
    const shift = wb - fileFrom;
    for (let k = first; k < last; k++) out.offsets[w++] = prevFile.offsets[k] + shift;
    wb += fileEnd - fileFrom;
    pos = end;
  }
  if (next.bytes.length > pos) {
    const stripped = stripEntryExtensions(next.bytes, pos, next.bytes.length, out.bytes, wb, out.offsets, w, 0);
    wb = stripped.end;
    w += stripped.count;
  }
  if (w !== m) throw new Error(`file entries merge wrote ${w} entries, expected ${m}`);
  return { entries: { bytes: out.bytes.subarray(0, wb), offsets: out.offsets.subarray(0, m) }, carried: Uint32Array.from(runs) };
}

/** The memory a file entries list is in, for a later run to write into (once it no longer is the current list). */
export const fileSpaceOf = (e: FileEntries): FileSpace => ({
  bytes: Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.buffer.byteLength - e.bytes.byteOffset),
  offsets: new Uint32Array(e.offsets.buffer, e.offsets.byteOffset, (e.offsets.buffer.byteLength - e.offsets.byteOffset) / 4),
});
