/**
 * A self-signed Device CA certificate signed through a KeySigner (the key may sit in a token),
 * and `ca create --key-uri`'s library half: a key generated in the token plus its CA certificate.
 */
import { signedEnvelope } from '../../domain/certificate-der.ts';
import { children, nth, readSingle, tlvBytes } from '../../domain/der.ts';
import { randomSerialHex } from '../serial-number.ts';
import { x509 } from '../x509.ts';
import { toPem } from '../pem.ts';
import type { KeySigner } from './key-signer.ts';
import { generateKeyInToken, type TokenKeyType } from './pkcs11/generate-key.ts';
import { openPkcs11Signer } from './pkcs11/pkcs11-signer.ts';

export interface CaCertificateOptions {
  commonName?: string;
  organization?: string;
  validityYears?: number;
  now: Date;
}

const WEB_ALGORITHM: Record<string, Algorithm & { hash: string }> = {
  sha256: { name: 'ECDSA', hash: 'SHA-256' },
  sha384: { name: 'ECDSA', hash: 'SHA-384' },
};

/** BasicConstraints CA (pathLen 0, critical), keyCertSign + cRLSign + digitalSignature, SKI: as createDeviceCa makes them. */
export async function createCaCertificate(signer: KeySigner, options: CaCertificateOptions): Promise<string> {
  const notBefore = new Date(options.now.getTime() - 60_000);
  const notAfter = new Date(options.now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + (options.validityYears ?? 10));
  const name = `CN=${options.commonName ?? 'certfleet Device CA'}, O=${options.organization ?? 'certfleet'}`;
  const rsa = signer.keyType.startsWith('rsa');
  // The library encodes the TBS around a placeholder signature; the signer then signs those exact bytes.
  const draft = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: name,
    issuer: name,
    notBefore,
    notAfter,
    publicKey: new Uint8Array(signer.spkiDer),
    signingAlgorithm: rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : WEB_ALGORITHM[signer.hash],
    signature: new Uint8Array(rsa ? 256 : 2 * (signer.hash === 'sha384' ? 48 : 32)).fill(1),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(new x509.PublicKey(new Uint8Array(signer.spkiDer))),
    ],
  });
  const der = Buffer.from(draft.rawData);
  const parts = children(der, readSingle(der));
  const [tbsTlv, algTlv] = [nth(parts, 0, 'tbsCertificate'), nth(parts, 1, 'signatureAlgorithm')];
  const tbs = Buffer.from(tlvBytes(der, tbsTlv));
  if (!Buffer.from(tlvBytes(der, algTlv)).equals(signer.algorithmIdentifierDer)) {
    throw new Error(`cannot make a CA certificate for a ${signer.keyType} key: signature algorithm mismatch`);
  }
  return toPem('CERTIFICATE', signedEnvelope(tbs, signer.algorithmIdentifierDer, await signer.sign(tbs)));
}

export interface TokenCaOptions extends CaCertificateOptions {
  /** Names the token and the new key's label (object=), e.g. pkcs11:token=certfleet;object=device-ca-2. */
  uri: string;
  modulePath: string;
  pin: string;
  keyType?: TokenKeyType;
}

/** Generates the CA key in the token (sensitive, not extractable) and self-signs its certificate there. */
export async function createDeviceCaInToken(options: TokenCaOptions): Promise<{ certPem: string; keyUri: string }> {
  const key = await generateKeyInToken(options);
  const signer = await openPkcs11Signer({ uri: key.uri, modulePath: options.modulePath, pin: options.pin, maxSessions: 1 });
  try {
    return { certPem: await createCaCertificate(signer, options), keyUri: key.uri };
  } finally {
    await signer.close();
  }
}
