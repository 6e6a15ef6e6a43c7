import { X509Certificate, createHash } from 'node:crypto';
import type { CertificateRecord } from '../domain/certificate.ts';
import { AppError } from '../domain/errors.ts';
import { isValidId } from '../domain/identifiers.ts';

/** A device proven by its certificate (TLS client certificate, or the broker's mTLS identity). */
export interface AuthenticatedDevice {
  tenantId: string;
  deviceId: string;
  certificate: CertificateRecord;
  /** Actor id of audit events and rotations started by the device itself. */
  actorId: string;
}

export const deviceActorId = (tenantId: string, deviceId: string): string => `device:${tenantId}/${deviceId}`;

/** `tenant/device` from a certificate CN (the device profile's only subject attribute). */
export function splitCommonName(commonName: string): { tenantId: string; deviceId: string } | null {
  const slash = commonName.indexOf('/');
  if (slash <= 0 || slash === commonName.length - 1) return null;
  const tenantId = commonName.slice(0, slash);
  const deviceId = commonName.slice(slash + 1);
  // Both are ids (one topic level each): `a/b/c` is not a device CN.
  return isValidId(tenantId) && isValidId(deviceId) ? { tenantId, deviceId } : null;
}

export function commonNameOf(cert: X509Certificate): string | null {
  const cn = cert.subject.split('\n').find((line) => line.startsWith('CN='));
  return cn ? cn.slice(3) : null;
}

export const fingerprintOfDer = (der: Uint8Array): string => createHash('sha256').update(der).digest('hex');

export const refused = (why: string) => new AppError('FORBIDDEN', `device certificate refused: ${why}`);

/** Only a certificate certfleet knows, of that device, ACTIVE and unexpired, authenticates a device. */
export function checkPresentedCertificate(record: CertificateRecord | null, deviceId: string, now: Date): CertificateRecord {
  if (!record || record.device_id !== deviceId) throw refused('unknown certificate');
  if (record.status === 'REVOKED') throw refused('the certificate is revoked');
  if (record.status !== 'ACTIVE' || Date.parse(record.not_after) <= now.getTime()) throw refused('the certificate has expired');
  return record;
}
