/**
 * RFC 5280 CRL (CertificateList, v2) builder: a pure function of explicit inputs.
 * No I/O, no clock: the caller passes thisUpdate/nextUpdate, the CRL number and a signer.
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
 *   TBSCertList ::= SEQUENCE {
 *     version INTEGER (1 = v2), signature AlgorithmIdentifier, issuer Name,
 *     thisUpdate Time, nextUpdate Time,
 *     revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER,
 *        revocationDate Time, crlEntryExtensions Extensions OPTIONAL } OPTIONAL,
 *     crlExtensions [0] EXPLICIT Extensions OPTIONAL }
 *
 * Revoked entries are pre-encoded by a streaming encoder (createRevokedEntriesEncoder)
 * straight into growing byte chunks, so a caller can feed a million rows batch by
 * batch from a DB cursor without holding them as JS objects.
 */
import {
  TAG,
  bitString,
  boolean,
  contextExplicit,
  contextImplicit,
  integer,
  lengthFieldSize,
  octetString,
  oid,
  readTlv,
  sequence,
  time,
  tlv,
  tlvSize,
  writeLength,
} from '../der.ts';

export interface CrlSigner {
  /** DER AlgorithmIdentifier used both in the TBS and as the outer signatureAlgorithm. */
  algorithmIdentifierDer: Uint8Array;
  /** Signs the DER TBSCertList; returns the raw signatureValue bytes (DER ECDSA-Sig-Value for EC). */
  sign(tbs: Uint8Array): Uint8Array;
}

export interface RevokedEntry {
  /** Certificate serial as unsigned hex (any case, leading zeros allowed); at most 20 octets. */
  serialHex: string;
  revokedAt: Date;
  /**
   * RFC 5280 CRLReason; 0 (unspecified) leaves the reasonCode entry extension out.
   * 7 is unassigned and 8 (removeFromCRL) belongs to delta CRLs only: both are rejected.
   */
  reasonCode: number;
}

export interface CrlInput {
  /** Subject Name of the CA certificate, byte-identical (put in verbatim as the CRL issuer). */
  issuerNameDer: Uint8Array;
  /** CA's subject key identifier (goes into Authority Key Identifier keyIdentifier [0]). */
  authorityKeyId: Uint8Array;
  thisUpdate: Date;
  nextUpdate: Date;
  /** Strictly increasing per CA; at most 20 octets (RFC 5280 5.2.3). */
  crlNumber: bigint;
  /**
   * Issuing Distribution Point full name URI, or none: a complete CRL for every certificate of the
   * CA. With one, OpenSSL (and so Mosquitto) applies the CRL only to certificates whose CRL DP is
   * that URL ("different CRL scope" for any other); EMQX enforces only CRLs that carry one.
   */
  distributionPointUrl?: string;
  /**
   * Concatenated DER revokedCertificates entries (the output of the entries encoder),
   * in ascending serial order. Empty: the revokedCertificates field is omitted.
   */
  revoked: Uint8Array;
  signer: CrlSigner;
}

const OID_AUTHORITY_KEY_ID = oid('2.5.29.35');
const OID_CRL_NUMBER = oid('2.5.29.20');
const OID_ISSUING_DISTRIBUTION_POINT = oid('2.5.29.28');
const VERSION_V2 = integer(1);
const CRITICAL = boolean(true);

/** Largest CRL number RFC 5280 allows (20 octets, non-negative). */
const MAX_CRL_NUMBER = (1n << 159n) - 1n;

function extension(oidDer: Uint8Array, critical: boolean, valueDer: Uint8Array): Buffer {
  // DER: the DEFAULT FALSE critical flag is omitted when false.
  return critical ? sequence(oidDer, CRITICAL, octetString(valueDer)) : sequence(oidDer, octetString(valueDer));
}

function checkWholeTlv(bytes: Uint8Array, tag: number, what: string) {
  let ok = false;
  try {
    const t = readTlv(bytes, 0, bytes.length);
    ok = t.tag === tag && t.end === bytes.length;
  } catch {
    ok = false;
  }
  if (!ok) throw new RangeError(`${what} must be one DER TLV with tag 0x${tag.toString(16)}`);
}

/** The crlExtensions [0] field: AKI, CRL Number, and the Issuing Distribution Point (critical) when given. */
export function encodeCrlExtensions(input: Pick<CrlInput, 'authorityKeyId' | 'crlNumber' | 'distributionPointUrl'>): Buffer {
  const { authorityKeyId, crlNumber, distributionPointUrl } = input;
  if (authorityKeyId.length === 0) throw new RangeError('authorityKeyId must not be empty');
  if (typeof crlNumber !== 'bigint' || crlNumber < 0n || crlNumber > MAX_CRL_NUMBER) {
    throw new RangeError('crlNumber must be a non-negative bigint of at most 20 octets');
  }
  // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
  const aki = sequence(contextImplicit(0, authorityKeyId));
  const extensions = [extension(OID_AUTHORITY_KEY_ID, false, aki), extension(OID_CRL_NUMBER, false, integer(crlNumber))];
  if (distributionPointUrl !== undefined) {
    // eslint-disable-next-line no-control-regex
    if (!/^[a-z][a-z0-9+.-]*:[\x21-\x7e]+$/i.test(distributionPointUrl)) {
      throw new RangeError(`distributionPointUrl is not an ASCII URI: "${distributionPointUrl}"`);
    }
    // IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName }
    // DistributionPointName ::= CHOICE { fullName [0] IMPLICIT GeneralNames }
    // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
    const uri = contextImplicit(6, Buffer.from(distributionPointUrl, 'latin1'));
    extensions.push(extension(OID_ISSUING_DISTRIBUTION_POINT, true, sequence(contextExplicit(0, contextImplicit(0, uri, true)))));
  }
  return contextExplicit(0, sequence(...extensions));
}

/** The TBSCertList content fields, in order (small parts plus the caller's entry bytes). */
function tbsCertListParts(input: CrlInput): Uint8Array[] {
  const { issuerNameDer, thisUpdate, nextUpdate, revoked, signer } = input;
  checkWholeTlv(issuerNameDer, TAG.SEQUENCE, 'issuerNameDer');
  checkWholeTlv(signer.algorithmIdentifierDer, TAG.SEQUENCE, 'signer.algorithmIdentifierDer');
  if (!(thisUpdate instanceof Date) || Number.isNaN(thisUpdate.getTime())) throw new RangeError('thisUpdate is not a valid Date');
  if (!(nextUpdate instanceof Date) || Number.isNaN(nextUpdate.getTime())) throw new RangeError('nextUpdate is not a valid Date');
  if (Math.floor(nextUpdate.getTime() / 1000) <= Math.floor(thisUpdate.getTime() / 1000)) {
    throw new RangeError('nextUpdate must be after thisUpdate');
  }
  if (!(revoked instanceof Uint8Array)) throw new TypeError('revoked must be the encoded entries (Uint8Array)');
  const parts: Uint8Array[] = [VERSION_V2, signer.algorithmIdentifierDer, issuerNameDer, time(thisUpdate), time(nextUpdate)];
  if (revoked.length > 0) {
    // Never an empty SEQUENCE: with no entries the field is left out.
    const header = Buffer.allocUnsafe(1 + lengthFieldSize(revoked.length));
    header[0] = TAG.SEQUENCE;
    writeLength(header, 1, revoked.length);
    parts.push(header, revoked);
  }
  parts.push(encodeCrlExtensions(input));
  return parts;
}

/** Builds the TBSCertList DER (exposed for tests and for signing elsewhere). */
export function buildTbsCertList(input: CrlInput): Buffer {
  return tlv(TAG.SEQUENCE, ...tbsCertListParts(input));
}

/** Room kept after the TBS for alg + signature so the CRL is built in one buffer (RSA-8192 fits). */
const SIGNATURE_SLACK = 1100;
/** Room kept before the TBS for the outer SEQUENCE header (tag + up to 5 length bytes). */
const OUTER_HEADER_ROOM = 6;

/**
 * Builds and signs the CRL; returns the DER CertificateList.
 *
 * The TBS is written once into a buffer with room around it, signed in place, and the
 * outer header and signature are written around it: the (possibly tens of MB) entry
 * bytes are copied exactly once. The result may be a view with a non-zero byteOffset.
 */
export function buildCrl(input: CrlInput): Buffer {
  const parts = tbsCertListParts(input);
  const alg = input.signer.algorithmIdentifierDer;
  let tbsContentLen = 0;
  for (const part of parts) tbsContentLen += part.length;
  const tbsLen = tlvSize(tbsContentLen);

  const out = Buffer.allocUnsafe(OUTER_HEADER_ROOM + tbsLen + alg.length + SIGNATURE_SLACK);
  const tbsStart = OUTER_HEADER_ROOM;
  out[tbsStart] = TAG.SEQUENCE;
  let off = writeLength(out, tbsStart + 1, tbsContentLen);
  for (const part of parts) {
    out.set(part, off);
    off += part.length;
  }
  const tbs = out.subarray(tbsStart, off);

  const signature = input.signer.sign(tbs);
  if (!(signature instanceof Uint8Array) || signature.length === 0) throw new Error('signer returned no signature');
  const sigContentLen = signature.length + 1; // + unused-bits byte
  const sigTlvLen = tlvSize(sigContentLen);
  const contentLen = tbsLen + alg.length + sigTlvLen;
  const headerLen = 1 + lengthFieldSize(contentLen);

  if (alg.length + sigTlvLen > out.length - off || headerLen > OUTER_HEADER_ROOM) {
    // Unusually large signature: fall back to a copy.
    return tlv(TAG.SEQUENCE, tbs, alg, bitString(signature));
  }
  out.set(alg, off);
  off += alg.length;
  out[off] = TAG.BIT_STRING;
  off = writeLength(out, off + 1, sigContentLen);
  out[off++] = 0; // no unused bits
  out.set(signature, off);
  off += signature.length;

  const start = tbsStart - headerLen;
  out[start] = TAG.SEQUENCE;
  writeLength(out, start + 1, contentLen);
  return out.subarray(start, off);
}

// ---------------------------------------------------------------------------
// Streaming revokedCertificates encoder
// ---------------------------------------------------------------------------

export interface RevokedEntriesEncoder {
  /**
   * Appends one entry. Entries MUST come in strictly ascending serial order (the
   * encoder checks this on the encoded integers, which is cheap, and throws on a
   * duplicate or out-of-order serial).
   */
  add(entry: RevokedEntry): void;
  /** Entries added so far. */
  readonly count: number;
  /** Encoded bytes so far. */
  readonly byteLength: number;
  /** Concatenated entry DER (empty Buffer when no entries). The encoder can't be used afterwards. */
  finish(): Buffer;
}

/**
 * Nibble value by UTF-16 code unit; 0x10 marks "not a hex digit". 64 KiB so any
 * charCodeAt result indexes it without a range check; errors are OR-ed and checked once.
 */
const HEX_NIBBLE = new Uint8Array(65536).fill(0x10);
for (let i = 0; i < 10; i++) HEX_NIBBLE[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_NIBBLE[65 + i] = 10 + i;
  HEX_NIBBLE[97 + i] = 10 + i;
}

/** Max serial: 20 octets of magnitude (+1 sign octet). */
const MAX_SERIAL_HEX_DIGITS = 40;
/** Largest entry: SEQ hdr 2 + INTEGER 2+21 + GeneralizedTime 2+15 + extensions 14. */
const MAX_ENTRY_BYTES = 56;
const FIRST_CHUNK = 16 * 1024;
const MAX_CHUNK = 4 * 1024 * 1024;

/** crlEntryExtensions with only reasonCode, minus the final ENUMERATED value byte. */
const REASON_EXTENSIONS_PREFIX = Uint8Array.from([
  0x30, 0x0c, // Extensions
  0x30, 0x0a, // Extension
  0x06, 0x03, 0x55, 0x1d, 0x15, // id-ce-cRLReasons 2.5.29.21
  0x04, 0x03, // extnValue OCTET STRING
  0x0a, 0x01, // ENUMERATED, 1 byte
]);

/**
 * Streaming encoder for revokedCertificates entries. Feed rows batch by batch from a
 * DB cursor (ordered by serial ascending) and drop them; each entry is written straight
 * into growing byte chunks (16 KiB doubling to 4 MiB), never kept as an object:
 *
 *   const enc = createRevokedEntriesEncoder();
 *   for await (const batch of cursor) for (const row of batch) enc.add(row);
 *   const crl = buildCrl({ ...rest, revoked: enc.finish() });
 */
export function createRevokedEntriesEncoder(): RevokedEntriesEncoder {
  const chunks: Buffer[] = [];
  let chunk = Buffer.allocUnsafe(FIRST_CHUNK);
  let pos = 0;
  let flushed = 0; // bytes in `chunks`
  let count = 0;
  let finished = false;

  // Where the previous entry's serial INTEGER content lives (in a chunk), for the order check.
  let prevChunk: Buffer = chunk;
  let prevSerialAt = 0;
  let prevSerialLen = 0;

  // Cached encoding of the last revocation time: entries from a DB cursor often share
  // a second, and nearly always a day. Computed arithmetically (no Date getters).
  let lastSecond = Number.NaN;
  let lastDay = Number.NaN;
  const timeBytes = new Uint8Array(17); // tag, len, YY|YYYY MMDD HHMMSS Z
  let timeLen = 0;
  let hmsAt = 0; // offset of HH in timeBytes

  function encodeTime(second: number) {
    const day = Math.floor(second / 86400);
    if (day !== lastDay) {
      // civil-from-days (H. Hinnant), proleptic Gregorian, UTC
      const z = day + 719468;
      const era = Math.floor(z / 146097);
      const doe = z - era * 146097;
      const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
      const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
      const mp = Math.floor((5 * doy + 2) / 153);
      const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
      const m = mp < 10 ? mp + 3 : mp - 9;
      const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
      let p = 2;
      if (y >= 1950 && y <= 2049) {
        timeBytes[0] = TAG.UTC_TIME;
        timeBytes[1] = 13;
      } else {
        if (y < 0 || y > 9999) throw new RangeError(`revokedAt year ${y} cannot be encoded`);
        timeBytes[0] = TAG.GENERALIZED_TIME;
        timeBytes[1] = 15;
        timeBytes[p++] = 48 + Math.floor(y / 1000);
        timeBytes[p++] = 48 + (Math.floor(y / 100) % 10);
      }
      const yy = y % 100;
      timeBytes[p++] = 48 + Math.floor(yy / 10);
      timeBytes[p++] = 48 + (yy % 10);
      timeBytes[p++] = 48 + Math.floor(m / 10);
      timeBytes[p++] = 48 + (m % 10);
      timeBytes[p++] = 48 + Math.floor(d / 10);
      timeBytes[p++] = 48 + (d % 10);
      hmsAt = p;
      timeBytes[p + 6] = 0x5a; // 'Z'
      timeLen = p + 7;
      lastDay = day;
    }
    const s = second - day * 86400; // 0..86399
    const hh = (s / 3600) | 0;
    const mi = ((s / 60) | 0) % 60;
    const ss = s % 60;
    let p = hmsAt;
    timeBytes[p++] = 48 + ((hh / 10) | 0);
    timeBytes[p++] = 48 + (hh % 10);
    timeBytes[p++] = 48 + ((mi / 10) | 0);
    timeBytes[p++] = 48 + (mi % 10);
    timeBytes[p++] = 48 + ((ss / 10) | 0);
    timeBytes[p] = 48 + (ss % 10);
    lastSecond = second;
  }

  /**
   * Writes the hex serial as minimal positive INTEGER content into `c` at `at`
   * (straight into the output chunk, no scratch copy); returns its length.
   */
  function writeSerial(hex: string, c: Buffer, at: number): number {
    if (typeof hex !== 'string') throw new TypeError('serialHex must be a string');
    const n = hex.length;
    let i = 0;
    while (i < n && hex.charCodeAt(i) === 48) i++; // strip leading zeros
    const digits = n - i;
    if (digits === 0) {
      if (n === 0) throw new RangeError('empty serialHex');
      c[at] = 0;
      return 1;
    }
    if (digits > MAX_SERIAL_HEX_DIGITS) throw new RangeError(`serial ${hex} is longer than 20 octets`);
    const T = HEX_NIBBLE;
    let out = at;
    let bad = 0;
    let j = i;
    let first: number;
    if (digits & 1) {
      first = T[hex.charCodeAt(j++)];
      bad = first;
    } else {
      const h = T[hex.charCodeAt(j++)];
      const l = T[hex.charCodeAt(j++)];
      bad = h | l;
      first = (h << 4) | l;
    }
    if (first & 0x80) c[out++] = 0;
    c[out++] = first;
    for (; j < n; j += 2) {
      const h = T[hex.charCodeAt(j)];
      const l = T[hex.charCodeAt(j + 1)];
      bad |= h | l;
      c[out++] = (h << 4) | l;
    }
    if (bad & 0x10) throw new RangeError(`serialHex "${hex}" is not hexadecimal`);
    return out - at;
  }

  function newChunk() {
    chunks.push(chunk.subarray(0, pos));
    flushed += pos;
    chunk = Buffer.allocUnsafe(Math.min(MAX_CHUNK, chunk.length * 2));
    pos = 0;
  }

  return {
    add(entry: RevokedEntry) {
      if (finished) throw new Error('revoked entries encoder already finished');
      const reason = entry.reasonCode;
      // 1-10 except 7 (unused) and 8 (removeFromCRL: only meaningful in delta CRLs)
      if (reason !== 0 && !(reason >= 1 && reason <= 10 && reason !== 7 && reason !== 8 && (reason | 0) === reason)) {
        throw new RangeError(`invalid reason code ${reason} for a full CRL entry (serial ${entry.serialHex})`);
      }
      const date = entry.revokedAt;
      const ms = date instanceof Date ? date.getTime() : Number.NaN;
      if (Number.isNaN(ms)) throw new RangeError(`revokedAt of serial ${entry.serialHex} is not a valid Date`);
      const second = Math.floor(ms / 1000);
      if (second !== lastSecond) encodeTime(second);

      if (chunk.length - pos < MAX_ENTRY_BYTES) newChunk();
      const c = chunk;
      const start = pos;
      // Entry layout (all lengths < 128, short form): 30 L 02 sl <serial> <time> [<reason ext>]
      const serialAt = start + 4;
      const serialLen = writeSerial(entry.serialHex, c, serialAt);

      // Strictly ascending: minimal positive INTEGER encodings compare by length, then bytes.
      if (count > 0) {
        let cmp = serialLen - prevSerialLen;
        if (cmp === 0) {
          const pc = prevChunk;
          for (let k = 0; k < serialLen; k++) {
            cmp = c[serialAt + k] - pc[prevSerialAt + k];
            if (cmp !== 0) break;
          }
        }
        if (cmp <= 0) {
          const prevHex = prevChunk.toString('hex', prevSerialAt, prevSerialAt + prevSerialLen);
          throw new RangeError(
            `revoked entries must be in strictly ascending serial order: ${entry.serialHex} after ${prevHex}`,
          );
        }
      }

      let p = serialAt + serialLen;
      for (let k = 0; k < timeLen; k++) c[p++] = timeBytes[k];
      if (reason !== 0) {
        for (let k = 0; k < 13; k++) c[p++] = REASON_EXTENSIONS_PREFIX[k];
        c[p++] = reason;
      }
      c[start] = TAG.SEQUENCE;
      c[start + 1] = p - start - 2;
      c[start + 2] = TAG.INTEGER;
      c[start + 3] = serialLen;
      pos = p;
      count++;
      prevChunk = c;
      prevSerialAt = serialAt;
      prevSerialLen = serialLen;
    },
    get count() {
      return count;
    },
    get byteLength() {
      return flushed + pos;
    },
    finish() {
      if (finished) throw new Error('revoked entries encoder already finished');
      finished = true;
      const out = Buffer.concat([...chunks, chunk.subarray(0, pos)], flushed + pos);
      chunks.length = 0;
      return out;
    },
  };
}

/** Convenience: encodes all entries (ascending serial order) at once. */
export function encodeRevokedEntries(entries: Iterable<RevokedEntry>): Buffer {
  const enc = createRevokedEntriesEncoder();
  for (const e of entries) enc.add(e);
  return enc.finish();
}
