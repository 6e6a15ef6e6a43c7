import { AppError } from '../domain/errors.ts';
import { assertEndEntityReason, reasonNameFor } from '../domain/revocation-reasons.ts';
import type { Queryable } from '../storage/driver.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import { findCertificate, markRevoked } from '../storage/repos/certificates-repo.ts';
import { cancelRotationsOf, completeRotationsOfOld } from '../storage/repos/rotations-repo.ts';
import type { AppDeps } from './deps.ts';
import { certificateNotFound } from './get-certificate.ts';
import type { Actor } from './ports.ts';

/**
 * ACTIVE → REVOKED with its audit event, in the caller's transaction; null when not ACTIVE.
 * A revoked old certificate no longer needs its scheduled revocation (completed); a revoked
 * new certificate cancels its rotation, so the certificates it superseded stay valid.
 */
export async function revokeInTransaction(tx: Queryable, actor: Actor, id: number, reason: string, at: Date) {
  const cert = await markRevoked(tx, id, reason, at);
  if (!cert) return null;
  await completeRotationsOfOld(tx, id, at);
  const keptIds = await cancelRotationsOf(tx, cert.tenant_id, cert.device_id, id, at);
  await recordAudit(tx, {
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
async function notRevocable(tx: Queryable, id: number): Promise<AppError> {
  const cert = await findCertificate(tx, id);
  if (!cert) return certificateNotFound(id);
  const { cert_pem: _pem, ...certificate } = cert;
  if (cert.status === 'REVOKED') {
    return new AppError('CERTIFICATE_ALREADY_REVOKED', `certificate ${id} was already revoked at ${cert.revoked_at}`, undefined, { certificate });
  }
  return new AppError('CERTIFICATE_EXPIRED', `certificate ${id} has expired (${cert.not_after}); it is no longer valid and needs no revocation`, undefined, { certificate });
}

export function createRevokeCertificate({ db, clock, revocations }: Pick<AppDeps, 'db' | 'clock' | 'revocations'>) {
  return async (actor: Actor, id: number, reason: string | undefined) => {
    const text = reason?.trim() || 'unspecified';
    assertEndEntityReason(text);
    const certificate = await db.asTenant(actor.tenantId, async (tx) => {
      const revoked = await revokeInTransaction(tx, actor, id, text, clock.now());
      if (!revoked) throw await notRevocable(tx, id);
      return revoked;
    });
    revocations.revocationCommitted();
    return { certificate, crl_reason: reasonNameFor(text) };
  };
}
