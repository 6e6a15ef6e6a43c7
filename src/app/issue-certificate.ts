import { DEVICE_KEY_NOTE, PRIVATE_KEY_WARNING } from '../domain/certificate.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { createIssuedCertificateStore } from './issued-certificate-store.ts';
import { createSignDeviceCertificate, type KeyRequest } from './sign-device-certificate.ts';

/** generate (server-side key) or csr (the device's key): the seed's response shape. */
export function createIssueCertificate(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'issuanceLimit'>) {
  const sign = createSignDeviceCertificate(deps);
  // Concurrent issuances of a tenant share one storing transaction (group commit).
  const issued = createIssuedCertificateStore(deps);
  return async (actor: Actor, deviceId: string, input: { validityDays?: number; key: KeyRequest }) => {
    assertDeviceId(deviceId);
    const signed = await sign(actor.tenantId, deviceId, input.validityDays, input.key);
    const certificate = await issued.store(actor, deviceId, { ...signed.issued, spkiSha256: signed.spkiSha256 }, signed.signedAt, 'certificate.issued', {
      key_source: input.key.kind,
      key_type: signed.issued.keyType,
    });
    return {
      certificate,
      cert_pem: signed.issued.certPem,
      ...(signed.privateKeyPem ? { private_key_pem: signed.privateKeyPem } : {}),
      ca_cert_pem: signed.issued.issuerPem ?? deps.authority.issuerPemOf(signed.issued.certPem) ?? deps.authority.caCertPem(actor.tenantId),
      warning: [signed.privateKeyPem ? PRIVATE_KEY_WARNING : DEVICE_KEY_NOTE, signed.validityWarning].filter(Boolean).join(' '),
    };
  };
}
