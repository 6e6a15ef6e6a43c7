import { DEVICE_KEY_NOTE, PRIVATE_KEY_WARNING } from '../domain/certificate.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { createIssuedCertificateStore } from './issued-certificate-store.ts';
import { createDeviceCertificateSigner, type KeyRequest, type SignedCertificate } from './sign-device-certificate.ts';

/** generate (server-side key) or csr (the device's key): the seed's response shape. */
export function createIssueCertificate(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'issuanceLimit'>) {
  const signer = createDeviceCertificateSigner(deps);
  // Concurrent issuances of a tenant share one storing transaction (group commit).
  const issued = createIssuedCertificateStore(deps);
  const details = (kind: KeyRequest['kind'], signed: SignedCertificate) => ({ key_source: kind, key_type: signed.issued.keyType });
  return async (actor: Actor, deviceId: string, input: { validityDays?: number; key: KeyRequest }) => {
    assertDeviceId(deviceId);
    const prepared = await signer.prepare(actor.tenantId, deviceId, input.validityDays, input.key);
    let signed: SignedCertificate;
    let certificate;
    if (input.key.kind === 'csr') {
      // The device's key: checked (compromised, another device's) before the CA signs, in the
      // group's storing transaction, then signed and stored there.
      const done = await issued.signAndStore(actor, deviceId, prepared.spkiSha256, async () => {
        const s = await signer.sign(prepared);
        return { cert: { ...s.issued, spkiSha256: s.spkiSha256 }, at: s.signedAt, details: details('csr', s), full: s };
      }, 'certificate.issued');
      signed = done.signed.full;
      certificate = done.record;
    } else {
      signed = await signer.sign(prepared);
      certificate = await issued.store(actor, deviceId, { ...signed.issued, spkiSha256: signed.spkiSha256 }, signed.signedAt, 'certificate.issued', details('generate', signed));
    }
    return {
      certificate,
      cert_pem: signed.issued.certPem,
      ...(signed.privateKeyPem ? { private_key_pem: signed.privateKeyPem } : {}),
      ca_cert_pem: signed.issued.issuerPem ?? deps.authority.issuerPemOf(signed.issued.certPem) ?? deps.authority.caCertPem(actor.tenantId),
      warning: [signed.privateKeyPem ? PRIVATE_KEY_WARNING : DEVICE_KEY_NOTE, signed.validityWarning].filter(Boolean).join(' '),
    };
  };
}
