/**
 * OpenSSL's subject name hash (`openssl x509 -hash`, X509_NAME_hash_ex): the file name a CA
 * certificate needs in a hashed certificate directory (`capath`, `<hash>.<n>`), computed here
 * without the openssl binary. OpenSSL hashes the name's canonical encoding: every RDN's SET, each
 * string value converted to UTF-8, leading and trailing whitespace dropped, inner whitespace runs
 * collapsed to one space, ASCII lower-cased, re-encoded as UTF8String; the outer SEQUENCE header
 * left out. SHA-1 of that, its first four bytes little-endian, 8 hex digits.
 * (test/subject-hash.test.ts compares it with `openssl x509 -hash` on awkward names.)
 */
import { createHash } from 'node:crypto';
import { children, readTlv, set, tlv, TAG, type Tlv } from '../domain/der.ts';

const UTF8 = 0x0c;
const PRINTABLE = 0x13;
const T61 = 0x14;
const IA5 = 0x16;
const VISIBLE = 0x1a;
const UNIVERSAL = 0x1c;
const BMP = 0x1e;

function toUtf8(tag: number, value: Uint8Array): Buffer | null {
  switch (tag) {
    case UTF8:
      return Buffer.from(value);
    case PRINTABLE:
    case IA5:
    case VISIBLE:
    case T61:
      return Buffer.from(Buffer.from(value).toString('latin1'), 'utf8');
    case BMP: {
      let s = '';
      for (let i = 0; i + 1 < value.length; i += 2) s += String.fromCharCode((value[i]! << 8) | value[i + 1]!);
      return Buffer.from(s, 'utf8');
    }
    case UNIVERSAL: {
      let s = '';
      for (let i = 0; i + 3 < value.length; i += 4) s += String.fromCodePoint(((value[i]! << 24) | (value[i + 1]! << 16) | (value[i + 2]! << 8) | value[i + 3]!) >>> 0);
      return Buffer.from(s, 'utf8');
    }
    default:
      return null;
  }
}

const isSpace = (b: number) => b === 0x20 || (b >= 0x09 && b <= 0x0d);

/** asn1_string_canon: trim, collapse whitespace, lower-case ASCII (bytes of UTF-8). */
function canonText(bytes: Buffer): Buffer {
  let start = 0;
  let end = bytes.length;
  while (start < end && isSpace(bytes[start]!)) start++;
  while (end > start && isSpace(bytes[end - 1]!)) end--;
  const out: number[] = [];
  for (let i = start; i < end; ) {
    const b = bytes[i]!;
    if (b >= 0x80) {
      out.push(b);
      i++;
    } else if (isSpace(b)) {
      out.push(0x20);
      while (i < end && isSpace(bytes[i]!)) i++;
    } else {
      out.push(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
      i++;
    }
  }
  return Buffer.from(out);
}

/** DER SET OF order: the encodings compared bytewise (a shorter prefix first). */
const derOrder = (a: Buffer, b: Buffer) => {
  const n = Math.min(a.length, b.length);
  const c = Buffer.compare(a.subarray(0, n), b.subarray(0, n));
  return c !== 0 ? c : a.length - b.length;
};

/** The canonical encoding of a Name (its TLV at `name` in `der`). */
export function canonicalName(der: Uint8Array, name: Tlv): Buffer {
  const parts: Buffer[] = [];
  for (const rdn of children(der, name)) {
    const entries = children(der, rdn).map((ava) => {
      const [type, value] = children(der, ava);
      if (!type || !value) throw new Error('a name entry without a type or value');
      const oid = Buffer.from(der.subarray(type.start, type.end));
      const text = toUtf8(value.tag, der.subarray(value.valueStart, value.end));
      const encodedValue = text === null ? Buffer.from(der.subarray(value.start, value.end)) : tlv(UTF8, canonText(text));
      return tlv(TAG.SEQUENCE, oid, encodedValue);
    });
    parts.push(set(...entries.sort(derOrder)));
  }
  return Buffer.concat(parts);
}

/** The subject's Name TLV of a DER certificate. */
function subjectOf(der: Uint8Array): Tlv {
  const cert = readTlv(der);
  const [tbs] = children(der, cert);
  if (!tbs) throw new Error('not a certificate');
  const fields = children(der, tbs);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version
  // serialNumber, signature, issuer, validity, subject
  const subject = fields[offset + 4];
  if (!subject) throw new Error('a certificate without a subject');
  return subject;
}

/** `openssl x509 -hash` of a DER certificate: 8 lower-case hex digits. */
export function subjectHash(certDer: Uint8Array): string {
  return nameHash(certDer, subjectOf(certDer));
}

/** OpenSSL's X509_NAME_hash of a Name inside `der`: the first 4 bytes of SHA-1 over its canonical form, little-endian, 8 hex digits. */
function nameHash(der: Uint8Array, name: Tlv): string {
  const md = createHash('sha1').update(canonicalName(der, name)).digest();
  return ((md[0]! | (md[1]! << 8) | (md[2]! << 16) | (md[3]! << 24)) >>> 0).toString(16).padStart(8, '0');
}

/** OpenSSL's hash of a CRL's issuer name (`openssl crl -hash`): the `<hash>.r<n>` a hashed directory (`capath`) holds it under. */
export function crlIssuerHash(crlDer: Uint8Array): string {
  const list = readTlv(crlDer);
  const [tbs] = children(crlDer, list);
  if (!tbs) throw new Error('not a CRL');
  const fields = children(crlDer, tbs);
  const offset = fields[0]?.tag === TAG.INTEGER ? 1 : 0; // version (v2)
  // signature, issuer
  const issuer = fields[offset + 1];
  if (!issuer) throw new Error('a CRL without an issuer');
  return nameHash(crlDer, issuer);
}
