import { AppError } from '../domain/errors.ts';
import { assertDeviceId, commonNameFor } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { spkiSha256, storeCertificate } from './sign-device-certificate.ts';

/** Registers a certificate issued earlier by the Device CA (for example before certfleet existed). */
export function createImportCertificate(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock'>) {
  return async (actor: Actor, deviceId: string, certPem: string) => {
    assertDeviceId(deviceId);
    const cert = await deps.authority.verifyIssued(certPem, actor.tenantId);
    const key = deps.keys.publicKeyFromCertificate(cert.certPem); // the profile's key rules hold for imports too
    const expected = commonNameFor(actor.tenantId, deviceId);
    if (cert.commonName !== expected) {
      throw new AppError('INVALID_CERTIFICATE', `the certificate's CN is "${cert.commonName}", expected "${expected}"`);
    }
    const now = deps.clock.now();
    if (cert.notAfter <= now) throw new AppError('INVALID_CERTIFICATE', 'the certificate has already expired');
    const certificate = await deps.storage.asTenant(actor.tenantId, async (repos) => {
      // Revoked on a CRL before a database restore (kept by the reconcile): importing it must not make it look valid.
      if (await repos.certificates.revokedOnEarlierCrl(cert.issuer, cert.serialHex)) {
        throw new AppError('CERTIFICATE_ALREADY_REVOKED', `certificate ${cert.serialHex} was revoked (listed on an earlier CRL); it cannot be imported`, undefined, { serial_number: cert.serialHex });
      }
      return storeCertificate(repos, actor, deviceId, { ...cert, spkiSha256: spkiSha256(key.spkiDer) }, now, 'certificate.imported');
    });
    return { certificate, cert_pem: cert.certPem };
  };
}
