/**
 * Verifies a DER CRL before it is published: structure, signature by the CA key,
 * version 2, nextUpdate in the future, CRL number present and increasing.
 * Walks TLVs only (no per-entry objects), so a 1M-entry CRL checks quickly.
 */
import { verify, type KeyObject } from 'node:crypto';
import {
  TAG,
  countChildren,
  decodeBoolean,
  decodeInteger,
  decodeOid,
  decodeTime,
  expectTag,
  readSingle,
  readTlv,
  tlvBytes,
  type Tlv,
} from '../domain/der.ts';
import { SIGNATURE_ALGORITHMS } from '../pki/crl-signer.ts';
import { inThreadPool } from '../support/crypto-pool.ts';
import { CRL_THREAD_MIN_BYTES, pemLinesInCrlThread, shared, verifyInCrlThread } from '../support/crl-thread.ts';
import { PemError, pemBlocks, pemByteLength, pemBytes, pemBytesSplit } from '../pki/pem.ts';

export type CrlVerificationErrorCode =
  | 'MALFORMED'
  | 'UNSUPPORTED_ALGORITHM'
  | 'BAD_SIGNATURE'
  | 'WRONG_ISSUER'
  | 'WRONG_VERSION'
  | 'EXPIRED'
  | 'NO_CRL_NUMBER'
  | 'CRL_NUMBER_NOT_INCREASING'
  | 'UNSUPPORTED_CRITICAL_EXTENSION';

export class CrlVerificationError extends Error {
  constructor(
    readonly code: CrlVerificationErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`CRL verification failed: ${message}`, options);
    this.name = 'CrlVerificationError';
  }
}

export interface VerifyCrlOptions {
  caPublicKey: KeyObject;
  /** verifyCrlAsync: the largest TBS checked in libuv's pool (default support/crypto-pool.ts's; lowered by its test). */
  threadPoolMaxBytes?: number;
  /** verifyCrlAsync: the smallest TBS in shared memory checked in the CRL thread (default support/crl-thread.ts's; lowered by its test). */
  crlThreadMinBytes?: number;
  now: Date;
  /** The last published CRL number: the new one must be strictly greater. */
  previousNumber?: bigint;
  /** If given, the CRL issuer must equal these bytes (the CA certificate's subject). */
  issuerNameDer?: Uint8Array;
  /**
   * The number of entries, as the lint of these very bytes just counted them: the entries are then
   * not walked again (the list's TLV header is still checked); returned as entryCount. Only for a
   * CRL whose entries the lint read in this process (publish-crl.ts); never for one read from elsewhere.
   */
  lintedEntryCount?: number;
}

export interface VerifiedCrl {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  entryCount: number;
}

const OID_CRL_NUMBER = '2.5.29.20';
const OID_DELTA_CRL_INDICATOR = '2.5.29.27';
/** CRL extensions we understand (so they may be critical). */
const KNOWN_CRL_EXTENSIONS = new Set([
  '2.5.29.35', // authorityKeyIdentifier
  OID_CRL_NUMBER,
  '2.5.29.28', // issuingDistributionPoint
  '2.5.29.18', // issuerAltName
  '2.5.29.46', // freshestCRL
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
]);

function structure(code: CrlVerificationErrorCode, fn: () => Tlv, what: string): Tlv {
  try {
    return fn();
  } catch (e) {
    throw new CrlVerificationError(code, `${what}: ${(e as Error).message}`, { cause: e });
  }
}

export function verifyCrl(der: Uint8Array, options: VerifyCrlOptions): VerifiedCrl {
  const { verified, signed } = checked(der, options);
  checkSignature(signed);
  return verified;
}

function checkSignature(signed: SignedPart): void {
  let ok = false;
  try {
    ok = verify(signed.hash, signed.data, signed.key, signed.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw badSignature();
}

/**
 * verifyCrl with the signature checked in libuv's thread pool: the hash over the TBS (the one
 * pass over the CRL's bytes verification cannot avoid) runs on another core while the caller
 * goes on (publish-crl.ts encodes the PEM and writes the temp file meanwhile; the rename waits for
 * this). Everything but the signature is checked before it returns the promise (a structure or
 * number error throws synchronously).
 */
export function verifyCrlAsync(der: Uint8Array, options: VerifyCrlOptions): Promise<VerifiedCrl> {
  const { verified, signed } = checked(der, options);
  // A large CRL in shared memory (the broker file's, publish-crl.ts): in the CRL thread, without a copy (support/crl-thread.ts).
  if (signed.data.length >= (options.crlThreadMinBytes ?? CRL_THREAD_MIN_BYTES) && shared(signed.data)) {
    return verifyInCrlThread(signed.hash, signed.data, signed.key.key, signed.signature).then((ok) => {
      if (!ok) throw badSignature();
      return verified;
    });
  }
  // Above the pool's copy limit, checked here: less of the calling thread than the pool's copy (support/crypto-pool.ts).
  if (!inThreadPool(signed.data.length, options.threadPoolMaxBytes)) {
    return new Promise((resolve) => {
      checkSignature(signed);
      resolve(verified);
    });
  }
  return new Promise((resolve, reject) => {
    try {
      verify(signed.hash, signed.data, signed.key, signed.signature, (error, ok) => (error || !ok ? reject(badSignature()) : resolve(verified)));
    } catch {
      reject(badSignature());
    }
  });
}

const badSignature = () => new CrlVerificationError('BAD_SIGNATURE', 'signature does not verify with the CA public key');

interface SignedPart {
  hash: string;
  data: Uint8Array;
  key: { key: KeyObject; dsaEncoding: 'der' };
  signature: Uint8Array;
}

function checked(der: Uint8Array, options: VerifyCrlOptions): { verified: VerifiedCrl; signed: SignedPart } {
  const { caPublicKey, now, previousNumber, issuerNameDer, lintedEntryCount } = options;
  try {
    return verifyInner(der, caPublicKey, now, previousNumber, issuerNameDer, lintedEntryCount);
  } catch (e) {
    if (e instanceof CrlVerificationError) throw e;
    throw new CrlVerificationError('MALFORMED', (e as Error).message, { cause: e });
  }
}

function verifyInner(
  der: Uint8Array,
  caPublicKey: KeyObject,
  now: Date,
  previousNumber: bigint | undefined,
  issuerNameDer: Uint8Array | undefined,
  lintedEntryCount: number | undefined,
): { verified: VerifiedCrl; signed: SignedPart } {
  if (!(der instanceof Uint8Array) || der.length === 0) throw new CrlVerificationError('MALFORMED', 'empty input');
  const list = structure('MALFORMED', () => expectTag(readSingle(der), TAG.SEQUENCE, 'CertificateList'), 'CertificateList');
  const tbs = expectTag(readTlv(der, list.valueStart, list.end), TAG.SEQUENCE, 'tbsCertList');
  const outerAlg = expectTag(readTlv(der, tbs.end, list.end), TAG.SEQUENCE, 'signatureAlgorithm');
  const sigValue = expectTag(readTlv(der, outerAlg.end, list.end), TAG.BIT_STRING, 'signatureValue');
  if (sigValue.end !== list.end) throw new CrlVerificationError('MALFORMED', 'trailing data in CertificateList');
  if (sigValue.length < 2 || der[sigValue.valueStart] !== 0) {
    throw new CrlVerificationError('MALFORMED', 'signatureValue must be a whole-byte BIT STRING');
  }

  // TBSCertList fields
  let off = tbs.valueStart;
  const next = (): Tlv | undefined => (off < tbs.end ? readTlv(der, off, tbs.end) : undefined);
  let f = next();
  if (!f || f.tag !== TAG.INTEGER) throw new CrlVerificationError('WRONG_VERSION', 'version field missing (v1 CRL), expected v2');
  const version = decodeInteger(der, f);
  if (version !== 1n) throw new CrlVerificationError('WRONG_VERSION', `version ${version + 1n}, expected 2`);
  off = f.end;
  const innerAlg = expectTag(next() ?? missing('signature'), TAG.SEQUENCE, 'signature');
  off = innerAlg.end;
  if (!Buffer.from(tlvBytes(der, innerAlg)).equals(tlvBytes(der, outerAlg))) {
    throw new CrlVerificationError('MALFORMED', 'tbsCertList signature algorithm differs from signatureAlgorithm');
  }
  const issuer = expectTag(next() ?? missing('issuer'), TAG.SEQUENCE, 'issuer');
  off = issuer.end;
  const thisUpdateTlv = next() ?? missing('thisUpdate');
  const thisUpdate = decodeTime(der, thisUpdateTlv);
  off = thisUpdateTlv.end;
  f = next();
  if (!f || (f.tag !== TAG.UTC_TIME && f.tag !== TAG.GENERALIZED_TIME)) {
    throw new CrlVerificationError('MALFORMED', 'nextUpdate missing');
  }
  const nextUpdate = decodeTime(der, f);
  off = f.end;
  f = next();
  let entryCount = 0;
  if (f && f.tag === TAG.SEQUENCE) {
    entryCount = lintedEntryCount ?? countChildren(der, f, TAG.SEQUENCE);
    if (entryCount === 0 || f.length === 0) throw new CrlVerificationError('MALFORMED', 'empty revokedCertificates (must be absent)');
    off = f.end;
    f = next();
  }
  let crlNumber: bigint | undefined;
  if (f && f.tag === 0xa0) {
    crlNumber = readExtensions(der, f);
    off = f.end;
    f = next();
  }
  if (f) throw new CrlVerificationError('MALFORMED', `unexpected field with tag 0x${f.tag.toString(16)} in tbsCertList`);

  // signature
  const algSeq = readTlv(der, outerAlg.valueStart, outerAlg.end);
  const algOid = decodeOid(der, expectTag(algSeq, TAG.OID, 'algorithm'));
  const alg = SIGNATURE_ALGORITHMS[algOid];
  if (!alg) throw new CrlVerificationError('UNSUPPORTED_ALGORITHM', `unsupported signature algorithm ${algOid}`);
  if (caPublicKey.asymmetricKeyType !== alg.keyType) {
    throw new CrlVerificationError(
      'BAD_SIGNATURE',
      `CRL is signed with ${alg.name} but the CA key is ${caPublicKey.asymmetricKeyType ?? 'unknown'}`,
    );
  }
  const signed: SignedPart = {
    hash: alg.hash,
    data: der.subarray(tbs.start, tbs.end),
    key: { key: caPublicKey, dsaEncoding: 'der' },
    signature: der.subarray(sigValue.valueStart + 1, sigValue.end),
  };

  if (issuerNameDer && !Buffer.from(tlvBytes(der, issuer)).equals(issuerNameDer)) {
    throw new CrlVerificationError('WRONG_ISSUER', 'issuer name differs from the CA subject');
  }
  if (nextUpdate.getTime() <= thisUpdate.getTime()) {
    throw new CrlVerificationError('MALFORMED', 'nextUpdate is not after thisUpdate');
  }
  if (nextUpdate.getTime() <= now.getTime()) {
    throw new CrlVerificationError('EXPIRED', `nextUpdate ${nextUpdate.toISOString()} is not after now ${now.toISOString()}`);
  }
  if (crlNumber === undefined) throw new CrlVerificationError('NO_CRL_NUMBER', 'CRL Number extension missing');
  if (previousNumber !== undefined && crlNumber <= previousNumber) {
    throw new CrlVerificationError(
      'CRL_NUMBER_NOT_INCREASING',
      `CRL number ${crlNumber} is not greater than the previous ${previousNumber}`,
    );
  }
  return { verified: { crlNumber, thisUpdate, nextUpdate, entryCount }, signed };
}

function missing(what: string): never {
  throw new CrlVerificationError('MALFORMED', `${what} missing`);
}

/** Walks crlExtensions [0]; returns the CRL number if present. */
function readExtensions(der: Uint8Array, wrapper: Tlv): bigint | undefined {
  const seq = expectTag(readTlv(der, wrapper.valueStart, wrapper.end), TAG.SEQUENCE, 'crlExtensions');
  if (seq.end !== wrapper.end) throw new CrlVerificationError('MALFORMED', 'trailing data in crlExtensions');
  const seen = new Set<string>();
  let crlNumber: bigint | undefined;
  for (let off = seq.valueStart; off < seq.end; ) {
    const ext = expectTag(readTlv(der, off, seq.end), TAG.SEQUENCE, 'Extension');
    off = ext.end;
    let p = ext.valueStart;
    const idTlv = expectTag(readTlv(der, p, ext.end), TAG.OID, 'extnID');
    const id = decodeOid(der, idTlv);
    p = idTlv.end;
    let t = readTlv(der, p, ext.end);
    let critical = false;
    if (t.tag === TAG.BOOLEAN) {
      critical = decodeBoolean(der, t);
      if (!critical) throw new CrlVerificationError('MALFORMED', `extension ${id}: explicit critical FALSE is not DER`);
      p = t.end;
      t = readTlv(der, p, ext.end);
    }
    expectTag(t, TAG.OCTET_STRING, 'extnValue');
    if (t.end !== ext.end) throw new CrlVerificationError('MALFORMED', `extension ${id}: trailing data`);
    if (seen.has(id)) throw new CrlVerificationError('MALFORMED', `duplicate extension ${id}`);
    seen.add(id);
    if (id === OID_DELTA_CRL_INDICATOR) throw new CrlVerificationError('UNSUPPORTED_CRITICAL_EXTENSION', 'delta CRLs are not supported');
    if (critical && !KNOWN_CRL_EXTENSIONS.has(id)) {
      throw new CrlVerificationError('UNSUPPORTED_CRITICAL_EXTENSION', `unknown critical extension ${id}`);
    }
    if (id === OID_CRL_NUMBER) {
      const n = readTlv(der, t.valueStart, t.end);
      if (n.end !== t.end) throw new CrlVerificationError('MALFORMED', 'trailing data in CRL Number');
      crlNumber = decodeInteger(der, expectTag(n, TAG.INTEGER, 'CRLNumber'));
      if (crlNumber < 0n) throw new CrlVerificationError('MALFORMED', 'negative CRL number');
    }
  }
  return crlNumber;
}

const PEM_LABEL = 'X509 CRL';

/** PEM with the `X509 CRL` label (OpenSSL and Mosquitto reject `BEGIN CRL`), 64-char lines. */
export function crlDerToPem(der: Uint8Array): string {
  return crlDerToPemBytes(der).toString('latin1');
}

/** crlDerToPem as bytes (a 45 MB CRL becomes 61 MB of PEM without a string per line). */
export function crlDerToPemBytes(der: Uint8Array, out?: Buffer): Buffer {
  return pemBytes(PEM_LABEL, der, out);
}

/** Share of a large CRL's PEM lines the CRL thread encodes, after its signature check (about a third of the PEM's time). */
const CRL_THREAD_PEM_SHARE = 1 / 3;

/**
 * crlDerToPemBytes; for a large CRL in shared memory (and `out` too) part of the lines are
 * encoded by the CRL thread meanwhile (support/crl-thread.ts). The same bytes.
 */
export function crlDerToPemBytesAsync(der: Uint8Array, out: Buffer): Promise<Buffer> {
  if (der.length < CRL_THREAD_MIN_BYTES || !shared(der) || !shared(out)) return Promise.resolve(crlDerToPemBytes(der, out));
  return pemBytesSplit(PEM_LABEL, der, out, CRL_THREAD_PEM_SHARE, (part, outStart) => pemLinesInCrlThread(part, out, outStart));
}

/** Bytes of crlDerToPemBytes' result for `derLength` bytes of DER (the size of a reusable `out`). */
export const crlPemByteLength = (derLength: number): number => pemByteLength(PEM_LABEL, derLength);

/** DER bytes of the first `X509 CRL` PEM block. */
export function crlPemToDer(pem: string): Buffer {
  let first: Buffer | undefined;
  try {
    [first] = pemBlocks(pem, PEM_LABEL);
  } catch (error) {
    if (error instanceof PemError) throw new CrlVerificationError('MALFORMED', error.message);
    throw error;
  }
  if (!first) throw new CrlVerificationError('MALFORMED', `no "-----BEGIN ${PEM_LABEL}-----" PEM block`);
  return first;
}

/** The extnID and the start of the extnValue of a CRL Number extension: 06 03 55 1D 14 04. */
const CRL_NUMBER_EXTENSION = Buffer.from('0603551d1404', 'hex');

/**
 * The CRL Number a PEM CRL claims, read from the end of the file only (`tail`: its last KB or
 * so, which hold the extensions and the signature): nothing is verified. Lines must be the
 * usual 64 characters so the tail's base64 decodes on its own; null when not found.
 */
export function peekCrlNumber(tail: string): bigint | null {
  const end = tail.lastIndexOf(`-----END ${PEM_LABEL}-----`);
  if (end < 0) return null;
  const lines = tail.slice(0, end).split('\n').map((line) => line.trim());
  if (lines.at(-1) === '') lines.pop();
  let first = lines.length;
  while (first > 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(lines[first - 1]) && lines[first - 1] !== '') first--;
  // The first line of a cut tail may be partial: keep only lines known to start on a 48-byte boundary.
  if (first === 0) first = 1;
  const body = lines.slice(first);
  if (body.length === 0 || body.slice(0, -1).some((line) => line.length !== 64)) return null;
  const der = Buffer.from(body.join(''), 'base64');
  for (let at = der.lastIndexOf(CRL_NUMBER_EXTENSION); at >= 0; at = at > 0 ? der.lastIndexOf(CRL_NUMBER_EXTENSION, at - 1) : -1) {
    const p = at + CRL_NUMBER_EXTENSION.length;
    const length = der[p + 2];
    if (der[p] !== length + 2 || der[p + 1] !== 0x02 || length < 1 || length > 20 || p + 3 + length > der.length) continue;
    const value = der.subarray(p + 3, p + 3 + length);
    if (value[0] & 0x80) continue;
    return BigInt(`0x${value.toString('hex')}`);
  }
  return null;
}
