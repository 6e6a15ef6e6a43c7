import { createHash, createPrivateKey, createPublicKey, randomBytes, verify, webcrypto, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateDeviceKey } from './keys.ts';
import { assertFileNotWritableByOthers, assertKeyFileProtected } from './key-file-permissions.ts';
import { randomSerialHex } from './serial-number.ts';
import { x509 } from './x509.ts';
import { fileKeySigner } from './kms/file-signer.ts';
import type { KeySigner } from './kms/key-signer.ts';

export type CaKeyType = 'ec-p256' | 'rsa-3072';

/**
 * The Device CA, loaded once at start. Its key is reached only through `signer` (a file key in
 * this process or a key in a PKCS#11 token, see kms/): nothing else signs with it.
 */
export interface DeviceCa {
  certPem: string;
  certDer: Buffer;
  certificate: x509.X509Certificate;
  /** The CA's CN, stored as device_certificates.issuer. */
  issuerLabel: string;
  signer: KeySigner;
  publicKey: KeyObject;
  subjectKeyId: Buffer;
}

const SIGNING: Record<'rsa' | 'p256' | 'p384', { import: RsaHashedImportParams | EcKeyImportParams; sign: Algorithm | EcdsaParams }> = {
  rsa: { import: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  p256: { import: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams },
  p384: { import: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams },
};

function signingFor(key: KeyObject) {
  if (key.asymmetricKeyType === 'rsa') return SIGNING.rsa;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'prime256v1') return SIGNING.p256;
  if (curve === 'secp384r1') return SIGNING.p384;
  throw new Error(`unsupported Device CA key (${key.asymmetricKeyType} ${curve ?? ''})`);
}

/** The CA key, PEM: PKCS#8 (encrypted with `passphrase` or not), SEC1 or PKCS#1. */
function readCaKey(keyPem: string, passphrase: string | null, source: string): KeyObject {
  const encrypted = keyPem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----');
  if (encrypted && passphrase === null) {
    throw new Error(`the Device CA key ${source} is encrypted: give its passphrase in DEVICE_CA_KEY_PASSPHRASE_FILE (or DEVICE_CA_KEY_PASSPHRASE)`);
  }
  try {
    return encrypted ? createPrivateKey({ key: keyPem, format: 'pem', passphrase: passphrase ?? '' }) : createPrivateKey(keyPem);
  } catch (e) {
    // The message of a failed decryption never contains the passphrase; keep it out anyway.
    if (encrypted) throw new Error(`cannot decrypt the Device CA key ${source}: wrong passphrase (DEVICE_CA_KEY_PASSPHRASE_FILE / DEVICE_CA_KEY_PASSPHRASE)`);
    throw new Error(`cannot read the Device CA key ${source}: ${(e as Error).message}`);
  }
}

export async function deviceCaFromPem(certPem: string, keyPem: string, passphrase: string | null = null, source = '(PEM)'): Promise<DeviceCa> {
  const privateKey = readCaKey(keyPem, passphrase, source);
  signingFor(privateKey); // a Device CA key: RSA, EC P-256 or P-384
  return deviceCaFromSigner(certPem, fileKeySigner(privateKey, source));
}

/**
 * The Device CA of a certificate and the signer of its key. Refused unless the signer's public
 * key is the certificate's AND a signature made by the signer verifies with the certificate's
 * key (a token's public key object could belong to another private key).
 */
export async function deviceCaFromSigner(certPem: string, signer: KeySigner): Promise<DeviceCa> {
  const certificate = new x509.X509Certificate(certPem);
  const certKey = createPublicKey(certPem);
  const mismatch = `the Device CA key (${signer.label}) does not match its certificate`;
  if (!certKey.equals(signer.publicKey)) throw new Error(mismatch);
  const challenge = randomBytes(32);
  const proof = await signer.sign(challenge);
  const ecOptions = certKey.asymmetricKeyType === 'ec' ? { key: certKey, dsaEncoding: 'der' as const } : certKey;
  if (!verify(signer.hash, challenge, ecOptions, proof)) throw new Error(`${mismatch}: a test signature does not verify with the certificate's key`);
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  // A CA without SKI (made elsewhere) still gets a stable AKI value for what it signs.
  const subjectKeyId = ski ? Buffer.from(ski.keyId, 'hex') : createHash('sha1').update(signer.spkiDer).digest();
  return {
    certPem: certificate.toString('pem') + '\n',
    certDer: Buffer.from(certificate.rawData),
    certificate,
    issuerLabel: certificate.subjectName.getField('CN')[0] ?? certificate.subject,
    signer,
    publicKey: certKey,
    subjectKeyId,
  };
}

/**
 * Loads the Device CA; the key file (and passphrase file) must be protected (assertKeyFileProtected),
 * the certificate file writable by its owner only (assertFileNotWritableByOthers).
 */
export async function loadDeviceCa(certPath: string, keyPath: string, passphrase: { file?: string | null; value?: string | null } = {}): Promise<DeviceCa> {
  await assertKeyFileProtected(keyPath, 'the Device CA key');
  await assertFileNotWritableByOthers(certPath, 'the Device CA certificate');
  let secret = passphrase.value ?? null;
  if (passphrase.file) {
    await assertKeyFileProtected(passphrase.file, 'the Device CA key passphrase file');
    secret = (await readFile(passphrase.file, 'utf8')).replace(/\r?\n$/, '');
  }
  return deviceCaFromPem(await readFile(certPath, 'utf8'), await readFile(keyPath, 'utf8'), secret, keyPath);
}

export interface NewCaOptions {
  keyType?: CaKeyType;
  commonName?: string;
  organization?: string;
  validityYears?: number;
  now: Date;
}

/** A self-signed Device CA: BasicConstraints CA (pathLen 0), keyCertSign + cRLSign, SKI. */
export async function createDeviceCa(options: NewCaOptions): Promise<{ certPem: string; keyPem: string }> {
  const keyType = options.keyType ?? 'ec-p256';
  const { privateKeyPem } = await generateDeviceKey(keyType);
  const privateKey = createPrivateKey(privateKeyPem);
  const signing = signingFor(privateKey);
  const subtle = webcrypto.subtle;
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const keys = {
    privateKey: (await subtle.importKey('pkcs8', pkcs8, signing.import, false, ['sign'])) as CryptoKey,
    publicKey: (await subtle.importKey('spki', spki, signing.import, true, ['verify'])) as CryptoKey,
  };
  const notBefore = new Date(options.now.getTime() - 60_000);
  const notAfter = new Date(options.now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + (options.validityYears ?? 10));
  const name = `CN=${options.commonName ?? 'certfleet Device CA'}, O=${options.organization ?? 'certfleet'}`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: signing.sign,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: privateKeyPem };
}

/** Writes the CA; the key file is created 0600 and never overwritten. */
export async function writeDeviceCa(ca: { certPem: string; keyPem: string }, certPath: string, keyPath: string): Promise<void> {
  await mkdir(dirname(keyPath), { recursive: true, mode: 0o700 });
  await mkdir(dirname(certPath), { recursive: true });
  await writeFile(keyPath, ca.keyPem, { mode: 0o600, flag: 'wx' });
  await chmod(keyPath, 0o600);
  await writeFile(certPath, ca.certPem, { mode: 0o644 });
}

