/**
 * CRL signing with node:crypto, and the CA identity (issuer name bytes, key id)
 * a CRL needs, read from the CA certificate with our DER reader.
 */
import { createHash, createPublicKey, generateKeyPair, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import type { TbsSigner as CrlSigner } from '../domain/signer.ts';
import { promisify } from 'node:util';
import { pemBlocks } from './pem.ts';

const signAsync = promisify(sign);
import {
  DerError,
  TAG,
  children,
  decodeOid,
  expectTag,
  nullValue,
  oid,
  readSingle,
  readTlv,
  sequence,
  tlvBytes,
  valueBytes,
} from '../domain/der.ts';

export type { TbsSigner as CrlSigner } from '../domain/signer.ts';

/** Signature algorithms, by OID: the hash node:crypto uses and the key family. */
export const SIGNATURE_ALGORITHMS: Record<string, { hash: string; keyType: 'ec' | 'rsa'; name: string }> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', keyType: 'ec', name: 'ecdsa-with-SHA256' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', keyType: 'ec', name: 'ecdsa-with-SHA384' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', keyType: 'ec', name: 'ecdsa-with-SHA512' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', keyType: 'rsa', name: 'sha256WithRSAEncryption' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', keyType: 'rsa', name: 'sha384WithRSAEncryption' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', keyType: 'rsa', name: 'sha512WithRSAEncryption' },
};

/** Curve → ECDSA algorithm OID (RFC 5758: parameters absent). */
const EC_ALGORITHM_BY_CURVE: Record<string, string> = {
  prime256v1: '1.2.840.10045.4.3.2',
  secp384r1: '1.2.840.10045.4.3.3',
  secp521r1: '1.2.840.10045.4.3.4',
};

/**
 * A CrlSigner for an EC (P-256 → ecdsa-with-SHA256, P-384 → SHA384, P-521 → SHA512)
 * or RSA (sha256WithRSAEncryption, PKCS#1 v1.5, NULL parameters) private key.
 */
/** The signature AlgorithmIdentifier and digest of a key (private or public: only its algorithm counts). */
export function signatureAlgorithmFor(key: KeyObject): { algorithmIdentifierDer: Uint8Array; hash: string } {
  const keyType = key.asymmetricKeyType;
  if (keyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
    const algOid = EC_ALGORITHM_BY_CURVE[curve];
    if (!algOid) throw new TypeError(`unsupported EC curve for CRL signing: ${curve || 'unknown'}`);
    return { algorithmIdentifierDer: sequence(oid(algOid)), hash: SIGNATURE_ALGORITHMS[algOid]!.hash };
  }
  if (keyType === 'rsa') return { algorithmIdentifierDer: sequence(oid('1.2.840.113549.1.1.11'), nullValue()), hash: 'sha256' };
  throw new TypeError(`unsupported key type for CRL signing: ${keyType ?? 'unknown'}`);
}

/**
 * A CrlSigner for an EC (P-256 → ecdsa-with-SHA256, P-384 → SHA384, P-521 → SHA512)
 * or RSA (sha256WithRSAEncryption, PKCS#1 v1.5, NULL parameters) private key.
 */
export function createCrlSigner(privateKey: KeyObject): CrlSigner {
  if (privateKey.type !== 'private') throw new TypeError('createCrlSigner needs a private key');
  const { algorithmIdentifierDer, hash } = signatureAlgorithmFor(privateKey);
  if (privateKey.asymmetricKeyType === 'ec') {
    return {
      algorithmIdentifierDer,
      sign: (tbs) => sign(hash, tbs, { key: privateKey, dsaEncoding: 'der' }),
      signAsync: (tbs) => signAsync(hash, tbs, { key: privateKey, dsaEncoding: 'der' }),
    };
  }
  return { algorithmIdentifierDer, sign: (tbs) => sign(hash, tbs, privateKey), signAsync: (tbs) => signAsync(hash, tbs, privateKey) };
}

/**
 * The lint's throwaway key (Boulder's "lint before signing"): a key of the CA key's algorithm
 * (same curve, or same RSA modulus size) that signs a copy of every certificate and CRL before the
 * CA key signs the original, so a profile or encoder bug never gets a CA signature. Made once per
 * algorithm per process and kept (an RSA-2048 key takes about 0.1 s, RSA-4096 about 1 s), never
 * stored, never trusted by anyone.
 */
type KeyPair = { privateKey: KeyObject; publicKey: KeyObject };
const throwawayKeys = new Map<string, KeyPair>();
const generating = new Map<string, Promise<KeyPair>>();
const generateKeyPairAsync = promisify(generateKeyPair);

function algorithmOf(caKey: KeyObject): { id: string; type: 'ec'; namedCurve: string } | { id: string; type: 'rsa'; modulusLength: number } {
  const details = caKey.asymmetricKeyDetails ?? {};
  if (caKey.asymmetricKeyType === 'ec' && details.namedCurve) return { id: `ec:${details.namedCurve}`, type: 'ec', namedCurve: details.namedCurve };
  if (caKey.asymmetricKeyType === 'rsa' && details.modulusLength) return { id: `rsa:${details.modulusLength}`, type: 'rsa', modulusLength: details.modulusLength };
  throw new TypeError(`no throwaway lint key for a ${caKey.asymmetricKeyType ?? 'unknown'} CA key`);
}

/** The throwaway key of `caKey`'s algorithm, now (generated here if it is not ready yet: blocking for RSA). */
export function throwawayKeyFor(caKey: KeyObject): KeyPair {
  const alg = algorithmOf(caKey);
  let pair = throwawayKeys.get(alg.id);
  if (!pair) {
    pair = alg.type === 'ec' ? generateKeyPairSync('ec', { namedCurve: alg.namedCurve }) : generateKeyPairSync('rsa', { modulusLength: alg.modulusLength, publicExponent: 65537 });
    throwawayKeys.set(alg.id, pair);
  }
  return pair;
}

/** The same, generated in the thread pool (so an RSA CA's start does not wait for it); started once per algorithm. */
export function throwawayKeyForAsync(caKey: KeyObject): Promise<KeyPair> {
  const alg = algorithmOf(caKey);
  const ready = throwawayKeys.get(alg.id);
  if (ready) return Promise.resolve(ready);
  let pending = generating.get(alg.id);
  if (!pending) {
    pending = (alg.type === 'ec' ? Promise.resolve(generateKeyPairSync('ec', { namedCurve: alg.namedCurve })) : generateKeyPairAsync('rsa', { modulusLength: alg.modulusLength, publicExponent: 65537 })).then((pair) => {
      if (!throwawayKeys.has(alg.id)) throwawayKeys.set(alg.id, pair);
      return throwawayKeys.get(alg.id)!;
    });
    generating.set(alg.id, pending);
  }
  return pending;
}

/**
 * A CrlSigner with the throwaway key of `caKey`'s algorithm: the same AlgorithmIdentifier, so the
 * TBS is the same bytes. The key generation starts now, in the background; signAsync waits for it.
 */
export function throwawaySignerFor(caKey: KeyObject): CrlSigner {
  // caKey may be the CA's public key (the private one may live in a token): only its algorithm is used.
  const key = throwawayKeyForAsync(caKey);
  key.catch(() => undefined); // reported by the first signature that needs it
  const algorithmIdentifierDer = signatureAlgorithmFor(caKey).algorithmIdentifierDer;
  return {
    algorithmIdentifierDer,
    sign: (tbs) => createCrlSigner(throwawayKeyFor(caKey).privateKey).sign(tbs),
    signAsync: async (tbs) => createCrlSigner((await key).privateKey).signAsync!(tbs),
  };
}

export interface CaIdentity {
  /** The certificate's subject Name TLV, byte-identical (use as the CRL issuer). */
  subjectDer: Buffer;
  /** Subject Key Identifier extension value, else SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1). */
  subjectKeyId: Buffer;
  publicKey: KeyObject;
}

const OID_SUBJECT_KEY_ID = '2.5.29.14';

/** Certificate bytes from PEM (first CERTIFICATE block; string or file bytes) or DER. */
export function certificateDer(cert: string | Uint8Array): Buffer {
  if (typeof cert !== 'string') {
    const bytes = Buffer.from(cert.buffer, cert.byteOffset, cert.byteLength);
    if (bytes[0] === 0x30) return bytes;
    cert = bytes.toString('latin1'); // PEM file contents read as bytes
  }
  const [first] = pemBlocks(cert, 'CERTIFICATE');
  if (!first) throw new TypeError('no PEM CERTIFICATE block found');
  return first;
}

export function caIdentityFromCertificate(cert: string | Uint8Array): CaIdentity {
  const der = certificateDer(cert);
  try {
    const certTlv = expectTag(readSingle(der), TAG.SEQUENCE, 'Certificate');
    const tbs = expectTag(readTlv(der, certTlv.valueStart, certTlv.end), TAG.SEQUENCE, 'TBSCertificate');
    const fields = children(der, tbs);
    let i = 0;
    if (fields[i]?.tag === 0xa0) i++; // [0] version
    if (fields.length < i + 6) throw new DerError('TBSCertificate has too few fields');
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    const subject = expectTag(fields[i + 4], TAG.SEQUENCE, 'subject');
    const spki = expectTag(fields[i + 5], TAG.SEQUENCE, 'subjectPublicKeyInfo');
    const spkiParts = children(der, spki);
    const keyBits = expectTag(spkiParts[1], TAG.BIT_STRING, 'subjectPublicKey');
    if (keyBits.length < 1 || der[keyBits.valueStart] !== 0) throw new DerError('subjectPublicKey has unused bits');

    let subjectKeyId: Buffer | undefined;
    const extsField = fields.slice(i + 6).find((f) => f.tag === 0xa3);
    if (extsField) {
      const exts = expectTag(readTlv(der, extsField.valueStart, extsField.end), TAG.SEQUENCE, 'extensions');
      for (const ext of children(der, exts)) {
        const parts = children(der, ext);
        if (decodeOid(der, expectTag(parts[0], TAG.OID, 'extnID')) !== OID_SUBJECT_KEY_ID) continue;
        const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, 'extnValue');
        const keyId = expectTag(readTlv(der, value.valueStart, value.end), TAG.OCTET_STRING, 'SubjectKeyIdentifier');
        subjectKeyId = Buffer.from(valueBytes(der, keyId));
      }
    }
    if (!subjectKeyId || subjectKeyId.length === 0) {
      subjectKeyId = createHash('sha1').update(der.subarray(keyBits.valueStart + 1, keyBits.end)).digest();
    }
    return {
      subjectDer: Buffer.from(tlvBytes(der, subject)),
      subjectKeyId,
      publicKey: createPublicKey({ key: Buffer.from(tlvBytes(der, spki)), format: 'der', type: 'spki' }),
    };
  } catch (e) {
    if (e instanceof DerError || e instanceof TypeError) {
      throw new Error(`cannot read CA certificate: ${e.message}`, { cause: e });
    }
    throw e;
  }
}
