import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { TAG, children, readSingle } from '../domain/der.ts';
import { AppError } from '../domain/errors.ts';
import { pemBlocks } from './pem.ts';
import type { KeySource } from '../app/ports.ts';
import { P256_SPKI_PREFIX, describeKey, generateDeviceKey, p256PublicKeyFromSpki, publicKeyFromSpki, spkiOf } from './keys.ts';
import { x509 } from './x509.ts';
import type { KeygenPool } from './keygen-pool.ts';

const ALLOWED_CURVES = new Set(['prime256v1', 'secp384r1']);
/** RSA public exponents accepted (CA/Browser Forum BR 6.1.6, NIST SP 800-89): 65537 <= e < 2^256. */
const MIN_RSA_EXPONENT = 65537n;
const RSA_EXPONENT_LIMIT = 1n << 256n;

/** Keys a device may bring: RSA of 2048 bits or more with 65537 <= e < 2^256, EC on P-256 or P-384. */
export function assertAcceptableKey(key: KeyObject): void {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    if ((details.modulusLength ?? 0) < 2048) {
      throw new AppError('WEAK_KEY', `RSA keys must have at least 2048 bits (got ${details.modulusLength})`);
    }
    const e = details.publicExponent ?? 0n;
    if (e < MIN_RSA_EXPONENT || e >= RSA_EXPONENT_LIMIT || e % 2n === 0n) {
      throw new AppError('WEAK_KEY', `RSA public exponent ${e} is not accepted (use 65537: an odd exponent from 65537 to below 2^256)`);
    }
    return;
  }
  if (key.asymmetricKeyType === 'ec' && ALLOWED_CURVES.has(details.namedCurve ?? '')) return;
  throw new AppError('WEAK_KEY', `unsupported key: ${key.asymmetricKeyType} ${details.namedCurve ?? ''}`.trim() + ' (use RSA >= 2048 or EC P-256/P-384)');
}

/**
 * Device keys: RSA from the bounded key generation pool (fair across tenants), EC inline.
 * Without a pool RSA is generated in libuv's thread pool, unbounded: only the benchmark's
 * peer and tests use that.
 */
export function createKeySource(pool: KeygenPool | null): KeySource {
  return {
    ...keySource,
    async generate(keyType, tenantId = '') {
      if (!pool || keyType !== 'rsa-2048') return generateDeviceKey(keyType);
      const { spkiDer, privateKeyPem } = await pool.generateRsa(2048, tenantId);
      return { publicKey: { spkiDer, keyType }, privateKeyPem };
    },
  };
}

/** Signature algorithms of the fast path: OID (DER content) → hash. */
const FAST_CSR_ALGORITHMS = new Map<string, string>([
  ['2a8648ce3d040302', 'sha256'], // ecdsa-with-SHA256
  ['2a8648ce3d040303', 'sha384'], // ecdsa-with-SHA384
  ['2a864886f70d01010b', 'sha256'], // sha256WithRSAEncryption
  ['2a864886f70d01010c', 'sha384'], // sha384WithRSAEncryption
  ['2a864886f70d01010d', 'sha512'], // sha512WithRSAEncryption
]);

/**
 * The common CSR (one PEM block; version 0; ECDSA or RSA PKCS#1 v1.5 with SHA-2), checked with
 * Node's crypto alone: the key acceptable (assertAcceptableKey), the signature over the request
 * info verified with that key. Accept-only: it returns the key when everything holds, and null for
 * anything else (another algorithm, a bad signature, a parse failure), which the @peculiar/x509
 * path below then judges and names, as before. About ten times less CPU per CSR than that path
 * (asn1js parse, WebCrypto import and verify), which dominated CSR issuance in the profile.
 */

/** The key of a CSR, as storage and the certificate carry it: the CSR's own bytes when they already are OpenSSL's canonical P-256 form (no export), else OpenSSL's export. */
function canonicalKey(key: KeyObject, spkiBytes: Buffer): { spkiDer: Buffer; keyType: string } {
  if (spkiBytes.length === P256_SPKI_PREFIX.length + 64 && spkiBytes.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX) && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return { spkiDer: Buffer.from(spkiBytes), keyType: 'ec-p256' };
  }
  return { spkiDer: spkiOf(key), keyType: describeKey(key) };
}

/**
 * The CSR's signature checked in libuv's thread pool (node:crypto verify with a callback, OpenSSL
 * as the inline call), off the event loop's thread: an ECDSA P-256 verification is about 90 µs of
 * CPU, the largest single item of a CSR issuance on the main thread.
 */
const verifyInPool = (hash: string, data: Buffer, key: KeyObject, signature: Buffer) =>
  new Promise<boolean>((resolve) => cryptoVerify(hash, data, key, signature, (error, ok) => resolve(!error && ok)));

async function verifiedCsrKeyFast(csrPem: string): Promise<{ key: KeyObject; spkiBytes: Buffer } | null> {
  try {
    const blocks = pemBlocks(csrPem, 'CERTIFICATE REQUEST');
    const [der, ...others] = blocks;
    if (der === undefined || others.length > 0) return null;
    const outer = readSingle(der);
    const [info, algorithm, signature, ...rest] = children(der, outer);
    if (!info || !algorithm || !signature || rest.length > 0 || info.tag !== TAG.SEQUENCE || algorithm.tag !== TAG.SEQUENCE || signature.tag !== TAG.BIT_STRING) return null;
    const [version, subject, spki, attributes, ...more] = children(der, info);
    if (!version || version.tag !== TAG.INTEGER || version.length !== 1 || der[version.valueStart] !== 0) return null;
    if (subject?.tag !== TAG.SEQUENCE || spki?.tag !== TAG.SEQUENCE || attributes?.tag !== 0xa0 || more.length > 0) return null;
    const [algOid, ...params] = children(der, algorithm);
    const hash = algOid?.tag === TAG.OID ? FAST_CSR_ALGORITHMS.get(der.toString('hex', algOid.valueStart, algOid.end)) : undefined;
    if (!hash || params.some((p) => p.tag !== TAG.NULL)) return null;
    if (der[signature.valueStart] !== 0) return null; // unused bits
    const spkiBytes = der.subarray(spki.start, spki.end);
    const key = (await p256PublicKeyFromSpki(spkiBytes)) ?? publicKeyFromSpki(spkiBytes);
    assertAcceptableKey(key);
    const signed = der.subarray(info.start, info.end);
    const sig = der.subarray(signature.valueStart + 1, signature.end);
    return (await verifyInPool(hash, signed, key, sig)) ? { key, spkiBytes } : null;
  } catch {
    return null;
  }
}

export const keySource: KeySource = {
  generate: (keyType) => generateDeviceKey(keyType),

  async publicKeyFromCsr(csrPem: string) {
    const fast = await verifiedCsrKeyFast(csrPem);
    if (fast) return canonicalKey(fast.key, fast.spkiBytes);
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem.trim());
    } catch {
      throw new AppError('INVALID_CSR', 'csr_pem is not a parseable PKCS#10 certificate request');
    }
    let key: KeyObject;
    try {
      key = publicKeyFromSpki(csr.publicKey.rawData);
    } catch {
      throw new AppError('WEAK_KEY', 'the CSR carries a public key of an unsupported type');
    }
    assertAcceptableKey(key);
    const valid = await csr.verify().catch(() => false);
    if (!valid) throw new AppError('INVALID_CSR', 'the CSR signature does not verify (proof of possession failed)');
    return { spkiDer: spkiOf(key), keyType: describeKey(key) };
  },

  publicKeyFromCertificate(certPem: string) {
    const cert = new x509.X509Certificate(certPem.trim());
    const key = publicKeyFromSpki(cert.publicKey.rawData);
    assertAcceptableKey(key);
    const usages = cert.getExtension(x509.KeyUsagesExtension)?.usages ?? 0;
    // RFC 8813 section 3: an EC key is for signatures and key agreement, never for encipherment.
    if (key.asymmetricKeyType === 'ec' && usages & (x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment)) {
      throw new AppError('INVALID_CERTIFICATE', 'an EC certificate must not assert keyEncipherment or dataEncipherment (RFC 8813)');
    }
    return { spkiDer: spkiOf(key), keyType: describeKey(key) };
  },
};
