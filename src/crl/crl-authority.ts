/** The Device CA as CRL issuer, and the CRL distribution point URL. */
import type { Config } from '../config.ts';
import type { CrlAuthority } from '../app/publish-crl.ts';
import { caIdentityFromCertificate } from '../pki/crl-signer.ts';
import { crlSignerFor } from '../pki/kms/key-signer.ts';
import type { DeviceCa } from '../pki/device-ca.ts';
import { caLintProfile } from '../pki/lint/ca-profile.ts';

/** The CRL URL of PUBLIC_BASE_URL: certificates carry it as CRL DP, the CRL served there as Issuing Distribution Point. */
export const crlDistributionPointUrl = (config: Pick<Config, 'publicBaseUrl'>): string => `${config.publicBaseUrl}/pki/crl`;

export function crlAuthorityFor(ca: DeviceCa): CrlAuthority {
  const identity = caIdentityFromCertificate(ca.certDer);
  return {
    issuerKeyId: identity.subjectKeyId.toString('hex'),
    issuerLabel: ca.issuerLabel,
    issuerNameDer: identity.subjectDer,
    authorityKeyId: identity.subjectKeyId,
    publicKey: ca.publicKey,
    signer: crlSignerFor(ca.signer),
    lintProfile: caLintProfile(ca.certDer),
  };
}
