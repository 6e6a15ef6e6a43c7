/**
 * Minimal DER (X.690) encoding helpers and a small strict reader.
 *
 * Pure: bytes in, bytes out, no I/O. Only low tag numbers (< 31) are supported,
 * which is all that X.509 certificates and CRLs use.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/** Number of bytes the DER length field takes for a value of `length` bytes. */
export function lengthFieldSize(length: number): number {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad DER length ${length}`);
  if (length < 0x80) return 1;
  let n = 1;
  for (let l = length; l > 0xff; l = Math.floor(l / 256)) n++;
  return 1 + n;
}

/** Writes the DER length field at `offset`; returns the offset after it. */
export function writeLength(target: Uint8Array, offset: number, length: number): number {
  const size = lengthFieldSize(length);
  if (size === 1) {
    target[offset] = length;
    return offset + 1;
  }
  target[offset] = 0x80 | (size - 1);
  let l = length;
  for (let i = size - 1; i >= 1; i--) {
    target[offset + i] = l & 0xff;
    l = Math.floor(l / 256);
  }
  return offset + size;
}

/** Size of a whole TLV whose value is `contentLength` bytes. */
export function tlvSize(contentLength: number): number {
  return 1 + lengthFieldSize(contentLength) + contentLength;
}

/** Tag-length-value with the contents concatenated (one allocation). */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xff || (tag & 0x1f) === 0x1f) {
    throw new RangeError(`unsupported DER tag 0x${tag.toString(16)}`);
  }
  let len = 0;
  for (const c of contents) len += c.length;
  const out = Buffer.allocUnsafe(tlvSize(len));
  out[0] = tag;
  let off = writeLength(out, 1, len);
  for (const c of contents) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

export const sequence = (...items: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...items);
export const set = (...items: Uint8Array[]): Buffer => tlv(TAG.SET, ...items);
export const octetString = (content: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, content);
export const nullValue = (): Buffer => Buffer.from([TAG.NULL, 0]);
export const boolean = (value: boolean): Buffer => Buffer.from([TAG.BOOLEAN, 1, value ? 0xff : 0x00]);

export function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (unusedBits > 0 && content.length === 0)) {
    throw new RangeError(`bad BIT STRING unused bits ${unusedBits}`);
  }
  return tlv(TAG.BIT_STRING, Uint8Array.of(unusedBits), content);
}

export function utf8String(value: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(value, 'utf8'));
}

/** Minimal two's-complement content bytes of an integer. */
export function integerContent(value: bigint): Buffer {
  if (value >= 0n) {
    let hex = value.toString(16);
    if (hex.length % 2) hex = '0' + hex;
    if (parseInt(hex.charAt(0), 16) >= 8) hex = '00' + hex;
    return Buffer.from(hex, 'hex');
  }
  // Negative: smallest k with -2^(8k-1) <= value, then 2^(8k) + value.
  let k = 1;
  while (value < -(1n << BigInt(8 * k - 1))) k++;
  const hex = ((1n << BigInt(8 * k)) + value).toString(16).padStart(2 * k, '0');
  return Buffer.from(hex, 'hex');
}

/** INTEGER from a bigint (any sign). */
export function integer(value: bigint | number): Buffer {
  return tlv(TAG.INTEGER, integerContent(BigInt(value)));
}

/**
 * Content bytes of a non-negative INTEGER given as unsigned big-endian bytes:
 * redundant leading zeros stripped, one 0x00 added when the high bit is set.
 */
export function unsignedIntegerContent(bytes: Uint8Array): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  if (bytes.length === 0) return Buffer.from([0]);
  const rest = bytes.subarray(i);
  if (byteAt(rest, 0) & 0x80) {
    const out = Buffer.allocUnsafe(rest.length + 1);
    out[0] = 0;
    out.set(rest, 1);
    return out;
  }
  return Buffer.from(rest);
}

/** INTEGER from unsigned big-endian bytes (e.g. a certificate serial). */
export function integerFromUnsigned(bytes: Uint8Array): Buffer {
  return tlv(TAG.INTEGER, unsignedIntegerContent(bytes));
}

export function enumerated(value: number | bigint): Buffer {
  return tlv(TAG.ENUMERATED, integerContent(BigInt(value)));
}

/** OBJECT IDENTIFIER from dotted notation, e.g. "2.5.29.20". */
export function oid(dotted: string): Buffer {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new RangeError(`bad OID "${dotted}"`);
  const [arc0 = 0n, arc1 = 0n, ...rest] = dotted.split('.').map((a) => BigInt(a)); // the pattern has at least two arcs
  if (arc0 < 2n && arc1 > 39n) throw new RangeError(`bad OID "${dotted}"`);
  const values = [arc0 * 40n + arc1, ...rest];
  const bytes: number[] = [];
  for (const v of values) {
    const group: number[] = [Number(v & 0x7fn)];
    for (let x = v >> 7n; x > 0n; x >>= 7n) group.unshift(Number(x & 0x7fn) | 0x80);
    bytes.push(...group);
  }
  return tlv(TAG.OID, Uint8Array.from(bytes));
}

const pad2 = (n: number) => (n < 10 ? '0' : '') + n;

/** UTCTime (YYMMDDHHMMSSZ), seconds precision; only for years 1950-2049. */
export function utcTime(date: Date): Buffer {
  const y = date.getUTCFullYear();
  if (!(y >= 1950 && y <= 2049)) throw new RangeError(`UTCTime cannot hold year ${y}`);
  return tlv(TAG.UTC_TIME, Buffer.from(timeDigits(date).slice(2) + 'Z', 'latin1'));
}

/** GeneralizedTime (YYYYMMDDHHMMSSZ), seconds precision, no fraction (DER). */
export function generalizedTime(date: Date): Buffer {
  const y = date.getUTCFullYear();
  if (!(y >= 0 && y <= 9999)) throw new RangeError(`GeneralizedTime cannot hold year ${y}`);
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(timeDigits(date) + 'Z', 'latin1'));
}

function timeDigits(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid Date');
  return (
    String(date.getUTCFullYear()).padStart(4, '0') +
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds())
  );
}

/** RFC 5280 4.1.2.5 / 5.1.2.4: UTCTime through 2049, GeneralizedTime otherwise. Milliseconds are dropped. */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  return y >= 1950 && y <= 2049 ? utcTime(date) : generalizedTime(date);
}

/** [n] EXPLICIT: constructed context-specific tag wrapping the complete TLV or TLVs. */
export function contextExplicit(tagNumber: number, ...contents: Uint8Array[]): Buffer {
  checkTagNumber(tagNumber);
  return tlv(0xa0 | tagNumber, ...contents);
}

/**
 * [n] IMPLICIT: replaces the tag of the underlying type. `content` is the VALUE
 * (not the TLV) of the underlying type; `constructed` must match that type
 * (true for SEQUENCE/SET/CHOICE-of-constructed, false for OCTET STRING, IA5String, ...).
 */
export function contextImplicit(tagNumber: number, content: Uint8Array, constructed = false): Buffer {
  checkTagNumber(tagNumber);
  return tlv(0x80 | (constructed ? 0x20 : 0) | tagNumber, content);
}

function checkTagNumber(n: number) {
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`unsupported context tag [${n}]`);
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/** The byte at `i`, or a DerError when the value ends before it. */
export function byteAt(buf: Uint8Array, i: number): number {
  const b = buf[i];
  if (b === undefined) throw new DerError(`truncated DER: no byte at offset ${i}`);
  return b;
}

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** One parsed TLV header; offsets are absolute in the buffer it was read from. */
export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first value byte. */
  valueStart: number;
  /** Value length. */
  length: number;
  /** Offset just past the value. */
  end: number;
}

export const isConstructed = (t: Tlv): boolean => (t.tag & 0x20) !== 0;

/**
 * Reads the TLV header at `offset` (strict DER: definite, minimal lengths, low tag
 * numbers) and checks that the value fits before `limit`.
 */
export function readTlv(buf: Uint8Array, offset = 0, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated DER at offset ${offset}`);
  const tag = byteAt(buf, offset);
  if ((tag & 0x1f) === 0x1f) throw new DerError(`high tag number form not supported at offset ${offset}`);
  let pos = offset + 1;
  const first = byteAt(buf, pos++);
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError(`indefinite length not allowed in DER at offset ${offset}`);
    if (n > 4) throw new DerError(`length too large at offset ${offset}`);
    if (pos + n > limit) throw new DerError(`truncated DER length at offset ${offset}`);
    if (buf[pos] === 0) throw new DerError(`non-minimal DER length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + byteAt(buf, pos++);
    if (length < 0x80) throw new DerError(`non-minimal DER length at offset ${offset}`);
  }
  const end = pos + length;
  if (end > limit) throw new DerError(`DER value overruns its container at offset ${offset}`);
  return { tag, start: offset, valueStart: pos, length, end };
}

/** The direct children of a constructed value. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  if (!isConstructed(parent)) throw new DerError(`tag 0x${parent.tag.toString(16)} is not constructed`);
  const out: Tlv[] = [];
  for (let off = parent.valueStart; off < parent.end; ) {
    const t = readTlv(buf, off, parent.end);
    out.push(t);
    off = t.end;
  }
  return out;
}

/** Counts the direct children of a constructed value without building objects. */
export function countChildren(buf: Uint8Array, parent: Tlv, expectTag?: number): number {
  let n = 0;
  const end = parent.end;
  for (let off = parent.valueStart; off < end; n++) {
    if (expectTag !== undefined && buf[off] !== expectTag) {
      throw new DerError(`expected tag 0x${expectTag.toString(16)} at offset ${off}`);
    }
    off = readTlv(buf, off, end).end;
  }
  return n;
}

/** The `index`-th of the children (or fields), or a DerError naming what is missing. */
export function nth(items: readonly Tlv[], index: number, what: string): Tlv {
  const t = items[index];
  if (t === undefined) throw new DerError(`${what}: missing`);
  return t;
}

/** Parses `buf` as exactly one TLV (no trailing bytes). */
export function readSingle(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0, buf.length);
  if (t.end !== buf.length) throw new DerError(`${buf.length - t.end} trailing bytes after DER value`);
  return t;
}

export const tlvBytes = (buf: Uint8Array, t: Tlv): Uint8Array => buf.subarray(t.start, t.end);
export const valueBytes = (buf: Uint8Array, t: Tlv): Uint8Array => buf.subarray(t.valueStart, t.end);

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined) throw new DerError(`${what}: missing`);
  if (t.tag !== tag) {
    throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  }
  return t;
}

/** INTEGER (or ENUMERATED) value as a bigint. */
export function decodeInteger(buf: Uint8Array, t: Tlv): bigint {
  if (t.length === 0) throw new DerError('empty INTEGER');
  const v = valueBytes(buf, t);
  const [b0 = 0, b1 = 0] = v; // not empty (checked above)
  if (v.length > 1 && ((b0 === 0 && !(b1 & 0x80)) || (b0 === 0xff && b1 & 0x80))) {
    throw new DerError('non-minimal INTEGER encoding');
  }
  let n = BigInt('0x' + Buffer.from(v).toString('hex'));
  if (b0 & 0x80) n -= 1n << BigInt(8 * v.length);
  return n;
}

export function decodeBoolean(buf: Uint8Array, t: Tlv): boolean {
  if (t.length !== 1) throw new DerError('BOOLEAN must be one byte');
  const b = buf[t.valueStart];
  if (b === 0) return false;
  if (b === 0xff) return true;
  throw new DerError('BOOLEAN must be 0x00 or 0xff in DER');
}

export function decodeOid(buf: Uint8Array, t: Tlv): string {
  const v = valueBytes(buf, t);
  if (v.length === 0) throw new DerError('empty OID');
  const arcs: bigint[] = [];
  let acc = 0n;
  for (let i = 0; i < v.length; i++) {
    const b = byteAt(v, i);
    if (acc === 0n && b === 0x80) throw new DerError('non-minimal OID arc');
    acc = (acc << 7n) | BigInt(b & 0x7f);
    if (!(b & 0x80)) {
      arcs.push(acc);
      acc = 0n;
    } else if (i === v.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  const first = arcs[0] ?? 0n; // the last byte ends an arc (checked above), so there is one
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

/** UTCTime or GeneralizedTime in their DER forms (seconds, trailing Z, no fraction). */
export function decodeTime(buf: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(valueBytes(buf, t)).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === TAG.UTC_TIME) {
    m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
    if (!m) throw new DerError(`bad UTCTime "${s}"`);
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (t.tag === TAG.GENERALIZED_TIME) {
    m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
    if (!m) throw new DerError(`bad GeneralizedTime "${s}"`);
    year = Number(m[1]);
  } else {
    throw new DerError(`expected a time, got tag 0x${t.tag.toString(16)}`);
  }
  const [mo = 0, d = 0, h = 0, mi = 0, se = 0] = [m[2], m[3], m[4], m[5], m[6]].map(Number); // all six groups matched
  const date = new Date(Date.UTC(year, mo - 1, d, h, mi, se));
  date.setUTCFullYear(year); // Date.UTC maps years 0-99 to 1900-1999
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d || h > 23 || mi > 59 || se > 59) {
    throw new DerError(`invalid date "${s}"`);
  }
  return date;
}
