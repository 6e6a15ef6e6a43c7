/**
 * Device CA keys for CA records (issue 19): made (`ca create`: self-signed, a root with pathLen 1,
 * or an intermediate with pathLen 0 signed by a loaded root's key), checked (`ca import`) and loaded
 * (the CA directory). File keys live under CA_KEY_DIR (default <data dir>/pki/cas), one file per CA
 * (`<id>.key`, mode 0600 in a 0700 directory, encrypted PKCS#8 when a CA key passphrase is configured),
 * never overwritten; keys in a PKCS#11 token are reached by their RFC 7512 URI with the PIN from
 * PKCS11_PIN_FILE and never leave the token.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../domain/errors.ts';
import type { CaKeyRef, CaRecord } from '../domain/ca.ts';
import type { CaKeystore, PreparedCa } from '../app/ports.ts';
import { assertAcceptableKey } from './key-source.ts';
import { deviceCaFromPem, deviceCaFromSigner, type DeviceCa } from './device-ca.ts';
import { generateDeviceKey } from './keys.ts';
import { fileKeySigner } from './kms/file-signer.ts';
import { assertKeyFileProtected } from './key-file-permissions.ts';
import { createCaCertificate, createDeviceCaInToken } from './kms/ca-certificate.ts';
import { openPkcs11Signer } from './kms/pkcs11/pkcs11-signer.ts';
import { readPinFile } from './kms/pkcs11/pin-file.ts';
import { x509 } from './x509.ts';

export interface CaKeystoreOptions {
  /** CA_KEY_DIR. */
  dir: string;
  /** The CA key passphrase (DEVICE_CA_KEY_PASSPHRASE_FILE / DEVICE_CA_KEY_PASSPHRASE): new file keys are encrypted with it, existing ones read with it. */
  passphrase: { file?: string | null; value?: string | null };
  /** PKCS11_MODULE_PATH, PKCS11_PIN_FILE (null: no token configured), PKCS11_SESSIONS. */
  modulePath: string;
  pinFile: string | null;
  sessions: number;
  /** Validity of a generated CA (years). Device certificates are capped at it. */
  validityYears?: number;
  /** Validity of a generated root (years, default 20); an intermediate ends with its root at the latest. */
  rootValidityYears?: number;
  /** A loaded root by CA id (the CA directory's): its key signs the intermediates made under it. */
  issuerOf?: (id: string) => DeviceCa | null;
}

async function passphraseOf(p: CaKeystoreOptions['passphrase']): Promise<string | null> {
  if (p.file) {
    await assertKeyFileProtected(p.file, 'the Device CA key passphrase file');
    return (await readFile(p.file, 'utf8')).replace(/\r?\n$/, '');
  }
  return p.value ?? null;
}

async function pinOf(options: CaKeystoreOptions): Promise<string> {
  if (!options.pinFile) throw new AppError('CA_KEY_UNAVAILABLE', 'a CA key in a PKCS#11 token needs PKCS11_PIN_FILE (the file holding the token user PIN) on the server');
  try {
    return await readPinFile(options.pinFile);
  } catch (e) {
    throw new AppError('CA_KEY_UNAVAILABLE', `cannot read the PKCS#11 PIN file: ${(e as Error).message}`);
  }
}

/** The checks of a CA certificate before it may become a record: parseable, a CA that may sign certificates and CRLs, unexpired, an acceptable key. */
export function checkCaCertificate(certPem: string, now: Date): x509.X509Certificate {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem.trim());
  } catch {
    throw new AppError('INVALID_CA_CERTIFICATE', 'cert_pem is not a parseable X.509 certificate');
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new AppError('INVALID_CA_CERTIFICATE', 'the certificate is not a CA certificate (basicConstraints cA is not true)');
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign && ku.usages & x509.KeyUsageFlags.cRLSign)) {
    throw new AppError('INVALID_CA_CERTIFICATE', 'the CA certificate does not allow keyCertSign and cRLSign (keyUsage): it could not sign device certificates and CRLs');
  }
  if (cert.notAfter.getTime() <= now.getTime()) throw new AppError('INVALID_CA_CERTIFICATE', `the CA certificate expired at ${cert.notAfter.toISOString()}`);
  if (cert.notBefore.getTime() > now.getTime() + 5 * 60_000) throw new AppError('INVALID_CA_CERTIFICATE', `the CA certificate is not valid before ${cert.notBefore.toISOString()}`);
  if (!cert.subjectName.getField('CN')[0]) throw new AppError('INVALID_CA_CERTIFICATE', 'the CA certificate subject has no CN (certfleet names a CA\'s certificates by it)');
  let key: KeyObject;
  try {
    key = createPublicKey(certPem);
  } catch {
    throw new AppError('WEAK_KEY', 'the CA certificate carries a public key of an unsupported type');
  }
  assertAcceptableKey(key); // WEAK_KEY: RSA < 2048 or e < 65537, a curve other than P-256/P-384
  return cert;
}

function prepared(ca: DeviceCa, keyRef: CaKeyRef, persist: () => Promise<void>): PreparedCa {
  return {
    certPem: ca.certPem,
    subject: ca.certificate.subject,
    issuerLabel: ca.issuerLabel,
    issuerKeyId: ca.subjectKeyId.toString('hex'),
    notBefore: ca.certificate.notBefore,
    notAfter: ca.certificate.notAfter,
    keyRef,
    persist,
  };
}

export function createCaKeystore(options: CaKeystoreOptions): CaKeystore & { load(record: Pick<CaRecord, 'certPem' | 'keyRef'>): Promise<DeviceCa> } {
  const keyPath = (id: string) => join(options.dir, `${id}.key`);

  /** Writes a new key file (0600, flag wx: an existing file is refused, never replaced). */
  async function writeKeyFile(path: string, privateKey: KeyObject): Promise<void> {
    const passphrase = await passphraseOf(options.passphrase);
    const pem = passphrase
      ? privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase })
      : privateKey.export({ type: 'pkcs8', format: 'pem' });
    await mkdir(options.dir, { recursive: true, mode: 0o700 });
    try {
      await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new AppError('CA_EXISTS', `a CA key file ${path} already exists: it is never overwritten`);
      throw e;
    }
    await chmod(path, 0o600);
  }

  async function tokenCa(certPem: string, uri: string): Promise<DeviceCa> {
    const pin = await pinOf(options);
    let signer;
    try {
      signer = await openPkcs11Signer({ uri, modulePath: options.modulePath, pin, maxSessions: options.sessions, certificatePublicKey: createPublicKey(certPem) });
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw new AppError('CA_KEY_UNAVAILABLE', `the CA key ${uri} cannot be used: ${(e as Error).message}`);
    }
    try {
      return await deviceCaFromSigner(certPem, signer);
    } catch (e) {
      await signer.close();
      throw new AppError('CA_KEY_MISMATCH', (e as Error).message);
    }
  }

  return {
    async generate(input) {
      const root = input.parentId ? options.issuerOf?.(input.parentId) : null;
      if (input.parentId && !input.parentCrlUrl) throw new AppError('VALIDATION_FAILED', "an intermediate needs its root's CRL URL");
      if (input.parentId && !root) throw new AppError('CA_KEY_UNAVAILABLE', `the key of root CA ${input.parentId} is not loaded in this server: it cannot sign an intermediate`);
      const certOptions = {
        commonName: input.commonName,
        validityYears: input.kind === 'root' ? (options.rootValidityYears ?? 20) : options.validityYears,
        now: input.now,
        pathLength: input.kind === 'root' ? 1 : 0,
        issuer: root ? { certDer: root.certDer, crlDistributionPointUrl: input.parentCrlUrl ?? '' } : null,
      };
      if (input.keyUri) {
        const pin = await pinOf(options);
        let made: { certPem: string; keyUri: string };
        try {
          made = await createDeviceCaInToken({ uri: input.keyUri, modulePath: options.modulePath, pin, keyType: input.keyType, ...certOptions, issuerSigner: root?.signer });
        } catch (e) {
          if (e instanceof AppError) throw e;
          throw new AppError('CA_KEY_UNAVAILABLE', `cannot generate the CA key in the token (${input.keyUri}): ${(e as Error).message}`);
        }
        const ca = await tokenCa(made.certPem, made.keyUri);
        await ca.signer.close();
        return prepared(ca, { kind: 'pkcs11', uri: made.keyUri }, async () => undefined);
      }
      const { privateKeyPem } = await generateDeviceKey(input.keyType);
      const privateKey = createPrivateKey(privateKeyPem);
      const own = fileKeySigner(privateKey, 'new CA key');
      const certPem = await createCaCertificate(root?.signer ?? own, { ...certOptions, subjectSpkiDer: own.spkiDer });
      const ca = await deviceCaFromPem(certPem, privateKeyPem, null, 'new CA key');
      const path = keyPath(input.id);
      return prepared(ca, { kind: 'file', path }, () => writeKeyFile(path, privateKey));
    },

    async importCa(input) {
      if ((input.keyPem === null) === (input.keyUri === null)) throw new AppError('VALIDATION_FAILED', 'give the CA key as key_pem or key_uri (exactly one)');
      checkCaCertificate(input.certPem, input.now);
      if (input.keyUri) {
        const ca = await tokenCa(input.certPem, input.keyUri);
        await ca.signer.close();
        return prepared(ca, { kind: 'pkcs11', uri: input.keyUri }, async () => undefined);
      }
      let privateKey: KeyObject;
      try {
        privateKey = createPrivateKey(input.keyPem!);
      } catch {
        throw new AppError('CA_KEY_UNAVAILABLE', 'key_pem is not a readable unencrypted private key (PKCS#8, SEC1 or PKCS#1 PEM)');
      }
      if (!createPublicKey(privateKey).equals(createPublicKey(input.certPem))) throw new AppError('CA_KEY_MISMATCH', 'the key does not match the CA certificate');
      let ca: DeviceCa;
      try {
        ca = await deviceCaFromPem(input.certPem, input.keyPem!, null, 'imported CA key');
      } catch (e) {
        throw new AppError('CA_KEY_MISMATCH', (e as Error).message);
      }
      const path = keyPath(input.id);
      return prepared(ca, { kind: 'file', path }, () => writeKeyFile(path, privateKey));
    },

    /** The DeviceCa of a stored record: its key file (protected, decrypted with the passphrase) or its token key; refused unless the key signs for the certificate. */
    async load(record) {
      if (record.keyRef.kind === 'pkcs11') return tokenCa(record.certPem, record.keyRef.uri);
      const path = record.keyRef.path;
      await assertKeyFileProtected(path, 'the Device CA key');
      return deviceCaFromPem(record.certPem, await readFile(path, 'utf8'), await passphraseOf(options.passphrase), path);
    },
  };
}
