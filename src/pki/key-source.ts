import type { KeyObject } from 'node:crypto';
import { AppError } from '../domain/errors.ts';
import type { KeySource } from '../app/ports.ts';
import { describeKey, generateDeviceKey, publicKeyFromSpki, spkiOf } from './keys.ts';
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

export const keySource: KeySource = {
  generate: (keyType) => generateDeviceKey(keyType),

  async publicKeyFromCsr(csrPem: string) {
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
