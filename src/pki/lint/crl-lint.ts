/**
 * Lints a CRL before it is stored or written: the header is parsed by @peculiar/asn1-x509
 * (time, extensions, CRL Number, AKI), the entries by the lint's own TLV reader (tlv.ts) in
 * one linear pass without per-entry objects, since a CRL reaches 1M entries (asn1js, under
 * @peculiar, refuses such trees). Neither shares code with our DER encoder. The signature is
 * not checked here: verifyCrl does that right after.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AuthorityKeyIdentifier,
  CRLNumber,
  Extensions,
  Time,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_deltaCRLIndicator,
  id_ce_issuingDistributionPoint,
} from '@peculiar/asn1-x509';
import type { CaLintProfile } from './ca-profile.ts';
import { lintCheck, LintFailure } from './lint-failure.ts';
import { byteOf, childNodes, expectNode, nodeBytes, readNode, type Node } from './tlv.ts';
import { DAY_MS } from '../../domain/clock.ts';

const SEQ = 0x30;
const INT = 0x02;
const KNOWN_CRL_EXTENSIONS = new Set([id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_issuingDistributionPoint]);
/** id-ce-cRLReasons (2.5.29.21) and id-ce-invalidityDate (2.5.29.24), DER-encoded OIDs. */
const REASON_OID = [0x06, 0x03, 0x55, 0x1d, 0x15];
const INVALIDITY_DATE_OID = [0x06, 0x03, 0x55, 0x1d, 0x18];
/**
 * reasonCode values a full CRL may carry: not 0 (unspecified is left out, RFC 5280 5.3.1),
 * 7 (unused) or 8 (removeFromCRL: delta CRLs only). The API no longer accepts
 * certificateHold or the CA reasons for a device, but rows revoked earlier keep theirs.
 */
/** Replicas' clocks differ a little: a revocation stamped by one may look later than thisUpdate of another. */
const CLOCK_SKEW_MS = 3_600_000;
const FULL_CRL_REASON_CODES = new Set([1, 2, 3, 4, 5, 6, 9, 10]);

export interface CrlLintOptions {
  ca: CaLintProfile;
  /** The last published number: this CRL's must be greater. */
  previousNumber: bigint;
  /**
   * A CRL already linted with the same entries (the other variant of one publication): when this
   * CRL's revokedCertificates bytes equal that one's, they are not walked again.
   */
  entriesLike?: { der: Uint8Array; entries: number };
  /**
   * An incremental publication: most entries are carried over byte for byte from the CRL this
   * process linted before; only the entries around them are linted in full (see CarriedEntries).
   */
  carried?: CarriedEntries;
  /**
   * Where each entry starts in the revokedCertificates contents (the publisher's offsets, kept
   * with the entries for the next incremental publication): checked against the entries here,
   * entry by entry (as numbers: a carried run's are its earlier offsets shifted), and reported
   * as `offsetsChecked`. Only offsets this lint checked may be given as the next CarriedEntries'
   * `previousOffsets`.
   */
  offsets?: Uint32Array;
}

/**
 * Entries of this CRL copied from the revokedCertificates of a CRL that passed this lint earlier
 * (the previous publication of the same CA, whose thisUpdate is not later than this one's).
 *
 * Why those entries need no second full lint, and what is still checked (every time):
 * - every byte of a carried run equals (compared here, memcmp) a byte range of `previous`, the
 *   list contents of the CRL linted before, held as the very buffer that lint read (publish-crl.ts
 *   keeps a view into that CRL, which nothing writes after its signature was placed);
 * - `from` is an entry boundary of `previous` (the publisher's entry offsets, produced with those
 *   bytes), and the whole list is walked header by header here, so each run is a sequence of
 *   complete entries that starts and ends on entry boundaries of this list: the run's entries are
 *   exactly entries of the earlier CRL, each of which passed the per-entry rules (serial size,
 *   sign and encoding, revocationDate valid and not after that CRL's thisUpdate + skew, hence not
 *   after this one's, reason codes, entry extensions);
 * - order: inside a run, entries are in the order the earlier lint found strictly ascending; at
 *   every run boundary and around every entry not carried, the serials are compared here;
 * - the entries not carried (the new revocations) get the full per-entry lint.
 * A run that does not match, or does not tile the list, fails the lint (crl.entries.carried): the
 * CA key never signs it. test/crl-lint.test.ts proves each case.
 */
export interface CarriedEntries {
  /** The revokedCertificates contents (entries' DER, concatenated) of the CRL linted before. */
  previous: Uint8Array;
  /**
   * Triples [at, end, from]: bytes [at, end) of this CRL's list contents are previous[from, from + end - at).
   * Ascending and non-overlapping; the bytes between runs are entries linted in full.
   */
  runs: Uint32Array;
  /**
   * Where each entry of `previous` starts, as checked by the lint that read `previous` (its
   * `offsets`). With them a carried run is not walked entry by entry: its ends must be entry
   * starts of `previous` (binary search), its entries are counted from them and only its first
   * and last serials are read (order against the entries around it). Without them every carried
   * entry's header is read.
   */
  previousOffsets?: Uint32Array;
}

export interface LintedCrl {
  crlNumber: bigint;
  entries: number;
  /** The `offsets` given were checked against the entries (false: none given, or the entries were not walked: `entriesLike`). */
  offsetsChecked?: boolean;
}

const parseWith = <T>(rule: string, what: string, fn: () => T): T => {
  try {
    return fn();
  } catch (e) {
    if (e instanceof LintFailure) throw e;
    throw new LintFailure(rule, `${what}: @peculiar/asn1-x509 cannot parse it: ${(e as Error).message}`);
  }
};

export function lintCrl(der: Uint8Array, { ca, previousNumber, entriesLike, carried, offsets }: CrlLintOptions): LintedCrl {
  const list = expectNode(der, 0, der.length, SEQ, 'CertificateList');
  lintCheck(list.end === der.length, 'crl.parse', 'trailing bytes after the CertificateList');
  const [tbs, outerAlg, sig, ...rest] = childNodes(der, list);
  lintCheck(tbs?.tag === SEQ && outerAlg?.tag === SEQ && sig?.tag === 0x03 && rest.length === 0, 'crl.parse', 'CertificateList is not SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }');

  let at = tbs.body;
  const next = (): Node | null => (at < tbs.end ? readNode(der, at, tbs.end) : null);
  const version = next();
  lintCheck(version?.tag === INT && version.end - version.body === 1 && der[version.body] === 1, 'crl.version', 'version must be v2 (INTEGER 1)');
  at = version.end;
  const innerAlg = expectNode(der, at, tbs.end, SEQ, 'signature');
  lintCheck(nodeBytes(der, innerAlg).equals(nodeBytes(der, outerAlg)), 'crl.signature_algorithm', 'tbsCertList.signature differs from signatureAlgorithm');
  at = innerAlg.end;
  const issuer = expectNode(der, at, tbs.end, SEQ, 'issuer');
  lintCheck(nodeBytes(der, issuer).equals(ca.subjectDer), 'crl.issuer', 'issuer bytes differ from the CA certificate subject');
  at = issuer.end;

  const thisNode = readNode(der, at, tbs.end);
  const thisUpdate = parseWith('crl.this_update', 'thisUpdate', () => AsnConvert.parse(nodeBytes(der, thisNode), Time).getTime());
  at = thisNode.end;
  const nextNode = next();
  lintCheck(nextNode && (nextNode.tag === 0x17 || nextNode.tag === 0x18), 'crl.next_update', 'nextUpdate is missing (RFC 5280 5.1.2.5: conforming CRL issuers MUST include it)');
  const nextUpdate = parseWith('crl.next_update', 'nextUpdate', () => AsnConvert.parse(nodeBytes(der, nextNode), Time).getTime());
  lintCheck(nextUpdate > thisUpdate, 'crl.next_update', 'nextUpdate is not after thisUpdate');
  lintCheck(thisUpdate >= ca.notBefore, 'crl.this_update', 'thisUpdate is before the CA was valid');
  at = nextNode.end;

  let entries = 0;
  let offsetsChecked = offsets !== undefined;
  let field = next();
  if (field?.tag === SEQ) {
    lintCheck(field.end > field.body, 'crl.entries.empty', 'an empty revokedCertificates list must be absent (RFC 5280 5.1.2.6)');
    const known = entriesLike && sameEntries(der, field, entriesLike.der);
    if (known) offsetsChecked = false;
    entries = known
      ? entriesLike.entries
      : carried?.previousOffsets
        ? lintCarriedByOffsets(der, field, thisUpdate.getTime(), carried as Required<CarriedEntries>, offsets)
        : carried
          ? lintCarriedEntries(der, field, thisUpdate.getTime(), carried)
          : lintEntries(der, field, thisUpdate.getTime(), offsets);
    at = field.end;
    field = next();
  } else if (offsets && offsets.length !== 0) {
    throw new LintFailure('crl.entries.offsets', `${offsets.length} entry offsets given for a CRL without entries`);
  }
  lintCheck(field?.tag === 0xa0 && field.end === tbs.end, 'crl.extensions', 'crlExtensions [0] must be present and last');
  const extensions = parseWith('crl.extensions', 'crlExtensions', () => AsnConvert.parse(der.subarray(field.body, field.end), Extensions));
  const seen = new Set<string>();
  for (const e of extensions) {
    lintCheck(!seen.has(e.extnID), 'crl.extensions.unique', `extension ${e.extnID} appears twice`);
    seen.add(e.extnID);
    lintCheck(e.extnID !== id_ce_deltaCRLIndicator, 'crl.extensions', 'a delta CRL indicator on a full CRL');
    lintCheck(!e.critical || KNOWN_CRL_EXTENSIONS.has(e.extnID), 'crl.extensions', `unknown critical extension ${e.extnID}`);
  }
  const numberExt = extensions.find((e) => e.extnID === id_ce_cRLNumber);
  lintCheck(numberExt && !numberExt.critical, 'crl.number', 'CRL Number must be present and non-critical');
  parseWith('crl.number', 'CRL Number', () => AsnConvert.parse(numberExt.extnValue, CRLNumber));
  const crlNumber = crlNumberOf(numberExt.extnValue.buffer);
  lintCheck(crlNumber > previousNumber, 'crl.number', `CRL Number ${crlNumber} is not greater than the previous ${previousNumber}`);
  const akiExt = extensions.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
  lintCheck(akiExt && !akiExt.critical, 'crl.aki', 'Authority Key Identifier must be present and non-critical');
  if (ca.subjectKeyId) {
    const keyId = AsnConvert.parse(akiExt.extnValue, AuthorityKeyIdentifier).keyIdentifier;
    lintCheck(keyId && Buffer.from(keyId.buffer).equals(ca.subjectKeyId), 'crl.aki', 'Authority Key Identifier differs from the CA key identifier');
  }
  return offsets ? { crlNumber, entries, offsetsChecked } : { crlNumber, entries };
}

/** Whether `other` (a CRL) has exactly the revokedCertificates bytes of `list` in `der`. */
function sameEntries(der: Uint8Array, list: Node, other: Uint8Array): boolean {
  const [tbs] = childNodes(other, expectNode(other, 0, other.length, SEQ, 'CertificateList'));
  const fields = tbs?.tag === SEQ ? childNodes(other, tbs) : [];
  const theirs = fields.find((f, i) => i > 4 && f.tag === SEQ);
  return theirs !== undefined && Buffer.compare(nodeBytes(other, theirs), nodeBytes(der, list)) === 0;
}

/** CRLNumber ::= INTEGER (0..MAX), at most 20 octets (RFC 5280 5.2.3). */
function crlNumberOf(extnValue: ArrayBuffer): bigint {
  const value = new Uint8Array(extnValue);
  const n = expectNode(value, 0, value.length, INT, 'CRLNumber', 'crl.number');
  const len = n.end - n.body;
  lintCheck(len >= 1 && len <= 20, 'crl.number', `CRL Number is ${len} octets (at most 20)`);
  lintCheck((byteOf(value, n.body, 'crl.number') & 0x80) === 0, 'crl.number', 'CRL Number is negative');
  return BigInt(`0x${Buffer.from(value.subarray(n.body, n.end)).toString('hex')}`);
}

/**
 * The entries loop reads headers into these three numbers instead of allocating a node per
 * TLV: at 1M entries that is the difference between ~0.3 s and ~1.5 s.
 */
let body = 0;
let end = 0;

/** Reads the TLV header at `at` into body/end; returns the tag. */
function header(buf: Uint8Array, at: number, limit: number, index: number): number {
  if (at + 2 > limit) throw new LintFailure('crl.parse', `entry ${index}: truncated`);
  const tag = byteOf(buf, at);
  let len = byteOf(buf, at + 1);
  body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || body + n > limit) throw new LintFailure('crl.parse', `entry ${index}: bad length`);
    len = n === 1 ? byteOf(buf, body) : byteOf(buf, body) * 256 + byteOf(buf, body + 1);
    if (buf[body] === 0 || len < 0x80) throw new LintFailure('crl.parse', `entry ${index}: non-minimal length (not DER)`);
    body += n;
  }
  end = body + len;
  if (end > limit) throw new LintFailure('crl.parse', `entry ${index}: runs past its parent`);
  return tag;
}

const d2 = (b: Uint8Array, i: number) => (byteOf(b, i) - 48) * 10 + (byteOf(b, i + 1) - 48);

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil); no Date object per entry. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

/** The last few days read, by their digits: a million entries span few distinct days. */
const dayCacheKeys = new Float64Array(64).fill(-1);
const dayCacheMs = new Float64Array(64);

/** UTCTime or GeneralizedTime content at [from, to) → ms, NaN when malformed or not a real date and time. */
function timeAt(buf: Uint8Array, t: number, from: number, to: number): number {
  const len = to - from;
  let i = from;
  let year: number;
  if (buf[to - 1] !== 0x5a) return Number.NaN;
  for (let k = from; k < to - 1; k++) {
    const digit = byteOf(buf, k);
    if (digit < 48 || digit > 57) return Number.NaN;
  }
  if (t === 0x17 && len === 13) {
    const yy = d2(buf, i);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    i += 2;
  } else if (t === 0x18 && len === 15) {
    year = d2(buf, i) * 100 + d2(buf, i + 2);
    i += 4;
  } else return Number.NaN;
  const month = d2(buf, i);
  const day = d2(buf, i + 2);
  const hour = d2(buf, i + 4);
  const minute = d2(buf, i + 6);
  const second = d2(buf, i + 8);
  if (hour > 23 || minute > 59 || second > 59) return Number.NaN;
  const key = (year * 100 + month) * 100 + day;
  const slot = key & 63;
  let dayMs: number;
  if (dayCacheKeys[slot] === key) {
    dayMs = dayCacheMs[slot] ?? Number.NaN;
  } else {
    const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 1 : 0;
    if (month < 1 || month > 12 || day < 1 || day > (DAYS_IN_MONTH[month] ?? 0) + leap) return Number.NaN;
    dayMs = daysFromCivil(year, month, day) * DAY_MS;
    dayCacheKeys[slot] = key;
    dayCacheMs[slot] = dayMs;
  }
  return dayMs + ((hour * 60 + minute) * 60 + second) * 1000;
}

/** The serial of the entry linted last (offset and length), for the order check of the next one; -1: none. */
let prevAt = -1;
let prevLen = 0;
/** Consecutive entries often share a revocation time: decoded only when the bytes change. */
let lastTimeAt = -1;
let lastTimeLen = 0;
let lastMs = 0;

/** Checks that the serial at [s, s + len) is above the last one (prevAt/prevLen), and makes it the last one. */
function orderAfterPrevious(der: Uint8Array, s: number, len: number, count: number): void {
  if (prevAt >= 0) {
    // Minimal positive INTEGERs: a longer one is larger; same length compares bytewise.
    let cmp = len - prevLen;
    for (let i = 0; cmp === 0 && i < len; i++) cmp = byteOf(der, s + i) - byteOf(der, prevAt + i);
    if (cmp <= 0) throw new LintFailure('crl.entries.order', `entry ${count}: serial ${cmp === 0 ? 'repeats' : 'is smaller than'} the previous one (entries must be sorted and unique)`);
  }
  prevAt = s;
  prevLen = len;
}

/** The entry at `at` (index `count`) in full: serial sign/size/encoding and order, date, reason, extensions. Returns its end. */
function lintEntry(der: Uint8Array, at: number, limit: number, count: number, thisUpdateMs: number): number {
  if (header(der, at, limit, count) !== SEQ) throw new LintFailure('crl.parse', `entry ${count}: not a SEQUENCE`);
  const entryEnd = end;
  if (header(der, body, entryEnd, count) !== INT) throw new LintFailure('crl.parse', `entry ${count}: serial is not an INTEGER`);
  const s = body;
  const len = end - s;
  if (len < 1 || len > 20) throw new LintFailure('crl.entries.serial.size', `entry ${count}: serial is ${len} octets (1 to 20)`);
  if (byteOf(der, s) & 0x80) throw new LintFailure('crl.entries.serial.sign', `entry ${count}: negative serial`);
  if (len > 1 && der[s] === 0 && (byteOf(der, s + 1) & 0x80) === 0) throw new LintFailure('crl.entries.serial.encoding', `entry ${count}: serial has a superfluous leading zero`);
  orderAfterPrevious(der, s, len, count);
  const timeTag = header(der, end, entryEnd, count);
  const timeLen = end - body;
  let same = timeLen === lastTimeLen && lastTimeAt >= 0 && der[body - 2] === der[lastTimeAt - 2];
  for (let i = 0; same && i < timeLen; i++) same = der[body + i] === der[lastTimeAt + i];
  if (!same) {
    lastMs = timeAt(der, timeTag, body, end);
    lastTimeAt = body;
    lastTimeLen = timeLen;
    if (Number.isNaN(lastMs)) throw new LintFailure('crl.entries.revocation_date', `entry ${count}: revocationDate is not a valid UTCTime/GeneralizedTime`);
    if (lastMs > thisUpdateMs + CLOCK_SKEW_MS) throw new LintFailure('crl.entries.revocation_date', `entry ${count}: revocationDate is more than an hour after thisUpdate`);
  }
  if (end < entryEnd) lintEntryExtensions(der, end, entryEnd, count);
  return entryEnd;
}

function resetEntryState(): void {
  prevAt = -1;
  prevLen = 0;
  lastTimeAt = -1;
  lastTimeLen = 0;
}

/** One pass over revokedCertificates: serial sign/size/encoding, strictly ascending (sorted, unique), date, reason. */
function lintEntries(der: Uint8Array, list: Node, thisUpdateMs: number, offsets?: Uint32Array): number {
  resetEntryState();
  let count = 0;
  for (let at = list.body; at < list.end; count++) {
    if (offsets && offsets[count] !== at - list.body) throw new LintFailure('crl.entries.offsets', `entry ${count} starts at ${at - list.body}, not at the offset given (${offsets[count]})`);
    at = lintEntry(der, at, list.end, count, thisUpdateMs);
  }
  if (offsets && offsets.length !== count) throw new LintFailure('crl.entries.offsets', `${offsets.length} entry offsets given for ${count} entries`);
  return count;
}

/** Index of `value` in the ascending `sorted`, or -1. */
function indexOfSorted(sorted: Uint32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo] === value ? lo : -1;
}

/**
 * lintCarriedEntries with the earlier list's checked entry offsets (CarriedEntries.previousOffsets):
 * the work is proportional to what changed, not to the CRL's size, except for two native passes
 * (the memcmp of each run, and the offsets compared as numbers when `offsets` is given). Why that
 * is still complete, run by run:
 * - its bytes equal previous[from, from + length) (memcmp), and both `from` and `from + length`
 *   are entry starts (or the end) of `previous` according to offsets that lint checked against
 *   those very bytes: the run is exactly a sequence of whole entries of the earlier CRL, each of
 *   which passed every per-entry rule then (serial size, sign, encoding; revocationDate valid and
 *   not after that CRL's thisUpdate + skew, hence not after this one's; reason codes; entry
 *   extensions) and which that lint found strictly ascending;
 * - its first serial is compared with the serial before it and its last serial becomes the one
 *   the next entry is compared with: order and uniqueness hold across every boundary;
 * - the entries between runs (the new revocations) get the full per-entry lint, and must end
 *   exactly where the next run starts, so runs and new entries tile the list;
 * - the count is the sum of the runs' entry counts (from the earlier offsets) and the new entries.
 */
function lintCarriedByOffsets(der: Uint8Array, list: Node, thisUpdateMs: number, carried: Required<CarriedEntries>, offsets?: Uint32Array): number {
  resetEntryState();
  const { previous, runs, previousOffsets } = carried;
  const fail = (message: string): never => {
    throw new LintFailure('crl.entries.carried', message);
  };
  const badOffset = (count: number): never => {
    throw new LintFailure('crl.entries.offsets', `entry ${count}: its offset differs from the one given`);
  };
  if (runs.length % 3 !== 0) fail('carried runs are not [at, end, from] triples');
  let count = 0;
  let at = list.body;
  for (let r = 0; r <= runs.length; r += 3) {
    const until = r < runs.length ? list.body + runs[r]! : list.end;
    if (until > list.end) fail(`carried run ${r / 3} starts past the end of the list`);
    while (at < until) {
      if (offsets && offsets[count] !== at - list.body) badOffset(count);
      at = lintEntry(der, at, until, count++, thisUpdateMs);
    }
    if (at !== until) fail(`carried run ${r / 3} does not start on an entry boundary`);
    if (r === runs.length) break;
    const runEnd = list.body + runs[r + 1]!;
    const from = runs[r + 2]!;
    const length = runEnd - at;
    if (runEnd <= at || runEnd > list.end || from + length > previous.length) fail(`carried run ${r / 3} is out of bounds`);
    if (Buffer.compare(Buffer.from(der.buffer, der.byteOffset + at, length), Buffer.from(previous.buffer, previous.byteOffset + from, length)) !== 0) {
      fail(`carried run ${r / 3} differs from the entries linted before`);
    }
    const first = indexOfSorted(previousOffsets, from);
    const last = from + length === previous.length ? previousOffsets.length : indexOfSorted(previousOffsets, from + length);
    if (first < 0 || last <= first) fail(`carried run ${r / 3} does not start and end on entries of the list linted before`);
    // Its first serial after the entry before it; its last serial is the one the next entry follows.
    if (header(der, at, runEnd, count) !== SEQ || header(der, body, end, count) !== INT) fail(`carried run ${r / 3} does not start with an entry`);
    orderAfterPrevious(der, body, end - body, count);
    const lastAt = at + (previousOffsets[last - 1]! - from);
    if (header(der, lastAt, runEnd, count) !== SEQ || end !== runEnd || header(der, body, end, count) !== INT) fail(`carried run ${r / 3} does not end with an entry`);
    prevAt = body;
    prevLen = end - body;
    if (offsets) {
      const shift = at - list.body - from;
      for (let k = first; k < last; k++) if (offsets[count + k - first] !== previousOffsets[k]! + shift) badOffset(count + k - first);
    }
    count += last - first;
    at = runEnd;
    // The revocation time cache refers to bytes outside the run: decode the next one afresh.
    lastTimeAt = -1;
  }
  if (offsets && offsets.length !== count) throw new LintFailure('crl.entries.offsets', `${offsets.length} entry offsets given for ${count} entries`);
  return count;
}

/**
 * revokedCertificates of an incremental publication (see CarriedEntries): carried runs compared
 * byte for byte with the earlier CRL's list and walked header by header (entry boundaries, count),
 * their first serial ordered after the entry before; every other entry linted in full.
 */
function lintCarriedEntries(der: Uint8Array, list: Node, thisUpdateMs: number, carried: CarriedEntries): number {
  resetEntryState();
  const { previous, runs } = carried;
  const fail = (message: string): never => {
    throw new LintFailure('crl.entries.carried', message);
  };
  if (runs.length % 3 !== 0) fail('carried runs are not [at, end, from] triples');
  let count = 0;
  let at = list.body;
  for (let r = 0; r <= runs.length; r += 3) {
    // Entries before the next run (or up to the list's end): not carried, linted in full.
    const until = r < runs.length ? list.body + runs[r]! : list.end;
    if (until > list.end) fail(`carried run ${r / 3} starts past the end of the list`);
    while (at < until) at = lintEntry(der, at, until, count++, thisUpdateMs);
    if (at !== until) fail(`carried run ${r / 3} does not start on an entry boundary`);
    if (r === runs.length) break;
    const runEnd = list.body + runs[r + 1]!;
    const from = runs[r + 2]!;
    if (runEnd <= at || runEnd > list.end || from + (runEnd - at) > previous.length) fail(`carried run ${r / 3} is out of bounds`);
    if (Buffer.compare(Buffer.from(der.buffer, der.byteOffset + at, runEnd - at), Buffer.from(previous.buffer, previous.byteOffset + from, runEnd - at)) !== 0) {
      fail(`carried run ${r / 3} differs from the entries linted before`);
    }
    // The run's first serial after the entry before it; the last one's becomes "previous" for what follows.
    if (header(der, at, runEnd, count) !== SEQ || header(der, body, end, count) !== INT) fail(`carried run ${r / 3} does not start with an entry`);
    orderAfterPrevious(der, body, end - body, count);
    let lastSerialAt = body;
    let lastSerialLen = end - body;
    while (at < runEnd) {
      if (header(der, at, runEnd, count) !== SEQ) fail(`entry ${count} of carried run ${r / 3} is not a SEQUENCE`);
      const entryEnd = end;
      header(der, body, entryEnd, count);
      lastSerialAt = body;
      lastSerialLen = end - body;
      at = entryEnd;
      count++;
    }
    prevAt = lastSerialAt;
    prevLen = lastSerialLen;
    // The revocation time cache refers to bytes outside the run: decode the next one afresh.
    lastTimeAt = -1;
  }
  return count;
}

const isOid = (buf: Uint8Array, from: number, to: number, oid: number[]) => {
  if (to - from !== oid.length) return false;
  for (let i = 0; i < oid.length; i++) if (buf[from + i] !== oid[i]) return false;
  return true;
};

function lintEntryExtensions(der: Uint8Array, from: number, limit: number, index: number) {
  if (header(der, from, limit, index) !== SEQ || end === body || end !== limit) throw new LintFailure('crl.entries.extensions', `entry ${index}: crlEntryExtensions must be a non-empty SEQUENCE, last`);
  const extsEnd = end;
  for (let at = body; at < extsEnd; ) {
    header(der, at, extsEnd, index);
    const extEnd = end;
    header(der, body, extEnd, index); // extnID
    const idFrom = body - 2;
    const idTo = end;
    if (header(der, idTo, extEnd, index) === 0x01) throw new LintFailure('crl.entries.extensions', `entry ${index}: critical entry extension`);
    if (isOid(der, idFrom, idTo, REASON_OID)) {
      const enumTag = header(der, body, end, index); // ENUMERATED inside the OCTET STRING
      const code = end - body === 1 ? byteOf(der, body) : -1;
      if (enumTag !== 0x0a || !FULL_CRL_REASON_CODES.has(code)) {
        throw new LintFailure('crl.entries.reason', `entry ${index}: reasonCode ${code} is not allowed in a full CRL (unspecified must be absent, removeFromCRL is for delta CRLs)`);
      }
    } else if (!isOid(der, idFrom, idTo, INVALIDITY_DATE_OID)) {
      throw new LintFailure('crl.entries.extensions', `entry ${index}: unexpected entry extension`);
    }
    at = extEnd;
  }
}
