import type { KeyType } from '../domain/certificate.ts';
import { capWarning, deviceValidity } from '../domain/device-validity.ts';
import { assertCommonNameFits, commonNameFor } from '../domain/identifiers.ts';
import { AppError } from '../domain/errors.ts';
import type { AppDeps } from './deps.ts';
import type { Actor, IssuedCertificate } from './ports.ts';
import { deviceNotFound } from './get-device.ts';
import { AlreadyExistsError, ReferenceNotFoundError, type TenantRepositories } from './storage-ports.ts';

/** Where the device's key comes from: generated here (the key is returned once) or the device's own CSR. */
export type KeyRequest = { kind: 'generate'; keyType: KeyType } | { kind: 'csr'; csrPem: string };

export interface SignedCertificate {
  issued: IssuedCertificate;
  privateKeyPem: string | null;
  signedAt: Date;
  /** Set when notAfter was capped at the CA's notAfter: say so in the response's warning. */
  validityWarning: string | null;
}

/**
 * Signs a certificate for tenant/device. Runs before the storing transaction, so no
 * transaction is held open during RSA key generation.
 */
export function createSignDeviceCertificate({ authority, keys, clock, issuanceLimit }: Pick<AppDeps, 'authority' | 'keys' | 'clock' | 'issuanceLimit'>) {
  return async (tenantId: string, deviceId: string, validityDays: number, key: KeyRequest): Promise<SignedCertificate> => {
    assertCommonNameFits(tenantId, deviceId);
    issuanceLimit.take(tenantId);
    deviceValidity({ signedAt: clock.now(), validityDays, ca: authority.caValidity() }); // fail fast (503) before any key work
    const { publicKey, privateKeyPem } =
      key.kind === 'generate' ? await keys.generate(key.keyType, tenantId) : { publicKey: await keys.publicKeyFromCsr(key.csrPem), privateKeyPem: null };
    const signedAt = clock.now();
    const validity = deviceValidity({ signedAt, validityDays, ca: authority.caValidity() });
    const issued = await authority.issue({
      commonName: commonNameFor(tenantId, deviceId),
      publicKey,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
    });
    return { issued, privateKeyPem, signedAt, validityWarning: validity.cappedAtCaNotAfter ? capWarning(validity.notAfter) : null };
  };
}

/** Inserts a signed or uploaded certificate and its audit event, in the caller's transaction. */
export async function storeCertificate(
  { certificates }: Pick<TenantRepositories, 'certificates'>,
  actor: Actor,
  deviceId: string,
  cert: IssuedCertificate,
  at: Date,
  action: string,
  details: Record<string, unknown> = {},
) {
  try {
    const record = await certificates.insertCertificate({
      tenantId: actor.tenantId,
      deviceId,
      certPem: cert.certPem,
      fingerprint: cert.fingerprint,
      commonName: commonNameFor(actor.tenantId, deviceId),
      issuer: cert.issuer,
      serialNumber: cert.serialHex,
      keyType: cert.keyType,
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
      now: at,
    }, {
      actor: actor.id,
      action,
      targetType: 'certificate',
      details: { device_id: deviceId, fingerprint: cert.fingerprint, serial_number: cert.serialHex, ...details },
    });
    return record;
  } catch (e) {
    if (e instanceof ReferenceNotFoundError) throw deviceNotFound(deviceId);
    if (e instanceof AlreadyExistsError) throw new AppError('CERTIFICATE_EXISTS', 'this certificate is already registered');
    throw e;
  }
}
