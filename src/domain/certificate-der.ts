import {
  bitString,
  boolean,
  contextExplicit,
  contextImplicit,
  integer,
  integerFromUnsigned,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from './der.ts';

/**
 * The device certificate profile, encoded directly in DER (pure: no I/O, no clock).
 * What varies per certificate is small (serial, validity, CN, key); the extensions
 * shared by every certificate of one CA are encoded once by `deviceProfile`.
 */
const OID = {
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  crlDistributionPoints: '2.5.29.31',
} as const;

const extension = (id: string, critical: boolean, value: Uint8Array) =>
  sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value));

export interface DeviceProfileInput {
  /** The CA certificate's subject Name, verbatim: the issuer of every certificate. */
  issuerNameDer: Uint8Array;
  authorityKeyId: Uint8Array;
  crlDistributionPointUrl: string;
  /** AlgorithmIdentifier of the CA's signature (inside TBS and outside). */
  signatureAlgorithmDer: Uint8Array;
}

export interface DeviceProfile extends DeviceProfileInput {
  /** BasicConstraints CA=false, KeyUsage, EKU clientAuth, AKI, CRL DP: already encoded. */
  sharedExtensions: Buffer;
}

export function deviceProfile(input: DeviceProfileInput): DeviceProfile {
  const sharedExtensions = Buffer.concat([
    extension(OID.basicConstraints, true, sequence()),
    // digitalSignature (bit 0) only: 1000 0000, 7 unused bits. Consistent with clientAuth for
    // RSA and EC keys alike (RFC 5280 4.2.1.12; RFC 8813 3: never keyEncipherment for EC).
    extension(OID.keyUsage, true, bitString(Uint8Array.of(0x80), 7)),
    extension(OID.extKeyUsage, false, sequence(oid(OID.clientAuth))),
    extension(OID.authorityKeyId, false, sequence(contextImplicit(0, input.authorityKeyId))),
    extension(
      OID.crlDistributionPoints,
      false,
      sequence(sequence(contextExplicit(0, contextImplicit(0, contextImplicit(6, Buffer.from(input.crlDistributionPointUrl, 'ascii')), true)))),
    ),
  ]);
  return { ...input, sharedExtensions };
}

export interface DeviceCertificateInput {
  serial: Uint8Array;
  commonName: string;
  notBefore: Date;
  notAfter: Date;
  subjectPublicKeyInfoDer: Uint8Array;
  subjectKeyId: Uint8Array;
}

/** The per-certificate constants, encoded once. */
const V3 = contextExplicit(0, integer(2));
const CN_OID = oid(OID.commonName);
const SKI_OID = oid(OID.subjectKeyId);

export function encodeDeviceTbs(profile: DeviceProfile, c: DeviceCertificateInput): Buffer {
  const subject = sequence(set(sequence(CN_OID, utf8String(c.commonName))));
  const extensions = sequence(profile.sharedExtensions, sequence(SKI_OID, octetString(octetString(c.subjectKeyId))));
  return sequence(
    V3,
    integerFromUnsigned(c.serial),
    profile.signatureAlgorithmDer,
    profile.issuerNameDer,
    sequence(time(c.notBefore), time(c.notAfter)),
    subject,
    c.subjectPublicKeyInfoDer,
    contextExplicit(3, extensions),
  );
}

/** Certificate / CertificateList: SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING }. */
export const signedEnvelope = (tbs: Uint8Array, signatureAlgorithmDer: Uint8Array, signature: Uint8Array): Buffer =>
  sequence(tbs, signatureAlgorithmDer, bitString(signature));
