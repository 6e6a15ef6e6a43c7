import { AppError } from '../domain/errors.ts';
import { assertEndEntityReason, reasonNameFor } from '../domain/revocation-reasons.ts';
import type { AppDeps } from './deps.ts';
import { certificateNotFound } from './get-certificate.ts';
import type { Actor } from './ports.ts';
import type { TenantRepositories } from './storage-ports.ts';

/**
 * ACTIVE → REVOKED with its audit event, in the caller's transaction; null when not ACTIVE.
 * A revoked old certificate no longer needs its scheduled revocation (completed); a revoked
 * new certificate cancels its rotation, so the certificates it superseded stay valid.
 */
export async function revokeInTransaction({ certificates, rotations, audit, keys }: TenantRepositories, actor: Actor, id: number, reason: string, at: Date) {
  const cert = await certificates.markRevoked(id, reason, at);
  if (!cert) return null;
  if (reason === 'keyCompromise') await keys.markKeyCompromised(id, at); // never certified again, in any tenant
  await rotations.completeRotationsOfOld(id, at);
  const keptIds = await rotations.cancelRotationsOf(cert.tenant_id, cert.device_id, id, at);
  await audit.recordAudit({
    tenantId: cert.tenant_id,
    actor: actor.id,
    action: 'certificate.revoked',
    targetType: 'certificate',
    targetId: id,
    details: {
      device_id: cert.device_id,
      serial_number: cert.serial_number,
      reason,
      crl_reason: reasonNameFor(reason),
      ...(keptIds.length ? { cancelled_rotation_of: keptIds } : {}),
    },
    at,
  });
  return { ...cert, scheduled_revoke_at: null };
}

/** Why a certificate could not be revoked: unknown (404), already revoked or expired (409). */
async function notRevocable({ certificates }: TenantRepositories, id: number): Promise<AppError> {
  const cert = await certificates.findCertificate(id);
  if (!cert) return certificateNotFound(id);
  const { cert_pem: _pem, ...certificate } = cert;
  if (cert.status === 'REVOKED') {
    return new AppError('CERTIFICATE_ALREADY_REVOKED', `certificate ${id} was already revoked at ${cert.revoked_at}`, undefined, { certificate });
  }
  return new AppError('CERTIFICATE_EXPIRED', `certificate ${id} has expired (${cert.not_after}); it is no longer valid and needs no revocation`, undefined, { certificate });
}

export function createRevokeCertificate({ storage, clock, revocations }: Pick<AppDeps, 'storage' | 'clock' | 'revocations'>) {
  return async (actor: Actor, id: number, reason: string | undefined) => {
    const text = reason?.trim() || 'unspecified';
    assertEndEntityReason(text);
    const certificate = await storage.asTenant(actor.tenantId, async (repos) => {
      const revoked = await revokeInTransaction(repos, actor, id, text, clock.now());
      if (!revoked) throw await notRevocable(repos, id);
      return revoked;
    });
    revocations.revocationCommitted();
    return { certificate, crl_reason: reasonNameFor(text) };
  };
}
