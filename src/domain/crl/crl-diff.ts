/**
 * Which serials a CRL lists that an earlier CRL did not (pure; DER in, lowercase hex out, the
 * form device_certificates.serial_number uses). Our CRLs list entries in ascending serial order,
 * so the two lists are merged in one pass with no per-entry objects for the common part; a CRL
 * made elsewhere (unsorted) falls back to a set.
 */
import { DerError, TAG, readSingle, readTlv, type Tlv } from '../der.ts';

/** The revokedCertificates SEQUENCE of a DER CertificateList, or null when the CRL lists nothing. */
function revokedList(der: Uint8Array): Tlv | null {
  const list = readSingle(der);
  if (list.tag !== TAG.SEQUENCE) throw new DerError('CertificateList: expected a SEQUENCE');
  const tbs = readTlv(der, list.valueStart, list.end);
  if (tbs.tag !== TAG.SEQUENCE) throw new DerError('tbsCertList: expected a SEQUENCE');
  let off = tbs.valueStart;
  let f = readTlv(der, off, tbs.end);
  if (f.tag === TAG.INTEGER) f = readTlv(der, (off = f.end), tbs.end); // version
  off = f.end; // signature
  off = readTlv(der, off, tbs.end).end; // issuer
  off = readTlv(der, off, tbs.end).end; // thisUpdate
  if (off >= tbs.end) return null;
  f = readTlv(der, off, tbs.end);
  if (f.tag === TAG.UTC_TIME || f.tag === TAG.GENERALIZED_TIME) {
    off = f.end; // nextUpdate
    if (off >= tbs.end) return null;
    f = readTlv(der, off, tbs.end);
  }
  return f.tag === TAG.SEQUENCE ? f : null;
}

/** Start/end of each entry's serial magnitude (INTEGER value without leading zero bytes). */
function* serials(der: Uint8Array, list: Tlv | null): Generator<[number, number]> {
  if (!list) return;
  for (let off = list.valueStart; off < list.end; ) {
    const entry = readTlv(der, off, list.end);
    const serial = readTlv(der, entry.valueStart, entry.end);
    if (serial.tag !== TAG.INTEGER) throw new DerError('revoked entry: userCertificate must be an INTEGER');
    let start = serial.valueStart;
    while (start < serial.end - 1 && der[start] === 0) start++;
    yield [start, serial.end];
    off = entry.end;
  }
}

function compare(a: Uint8Array, [as, ae]: [number, number], b: Uint8Array, [bs, be]: [number, number]): number {
  if (ae - as !== be - bs) return ae - as - (be - bs);
  for (let i = 0; i < ae - as; i++) {
    const d = a[as + i] - b[bs + i];
    if (d !== 0) return d;
  }
  return 0;
}

const hex = (der: Uint8Array, [s, e]: [number, number]) => Buffer.from(der.buffer, der.byteOffset + s, e - s).toString('hex').replace(/^0+(?=.)/, '');

/** Strictly ascending serials (one pass, no allocation per entry)? */
function sorted(der: Uint8Array, list: Tlv | null): boolean {
  let last: [number, number] | null = null;
  for (const s of serials(der, list)) {
    if (last && compare(der, last, der, s) >= 0) return false;
    last = s;
  }
  return true;
}

/** Serials listed in `next` and not in `previous` (null `previous`: every serial of `next`). */
export function newlyRevokedSerials(previous: Uint8Array | null, next: Uint8Array): string[] {
  const nextList = revokedList(next);
  const prevList = previous ? revokedList(previous) : null;
  if (!sorted(next, nextList) || (previous && !sorted(previous, prevList))) return viaSet(previous, prevList, next, nextList);
  const out: string[] = [];
  const prevIt = previous ? serials(previous, prevList) : null;
  let p = prevIt?.next();
  for (const n of serials(next, nextList)) {
    while (p && !p.done && compare(previous!, p.value, next, n) < 0) p = prevIt!.next();
    if (p && !p.done && compare(previous!, p.value, next, n) === 0) continue;
    out.push(hex(next, n));
  }
  return out;
}

function viaSet(previous: Uint8Array | null, prevList: Tlv | null, next: Uint8Array, nextList: Tlv | null): string[] {
  const seen = new Set<string>();
  if (previous) for (const s of serials(previous, prevList)) seen.add(hex(previous, s));
  const out = new Set<string>();
  for (const s of serials(next, nextList)) {
    const h = hex(next, s);
    if (!seen.has(h)) out.add(h);
  }
  return [...out];
}
