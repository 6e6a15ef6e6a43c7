import { reasonNameFor } from '../domain/revocation-reasons.ts';
import type { Queryable } from '../storage/driver.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import { markRevoked } from '../storage/repos/certificates-repo.ts';
import { completeRotationsOfOldCertificate } from '../storage/repos/rotations-repo.ts';
import type { AppDeps } from './deps.ts';
import { certificateNotFound } from './get-certificate.ts';
import type { Actor } from './ports.ts';

/** ACTIVE → REVOKED with its audit event, in the caller's transaction; null when not ACTIVE. */
export async function revokeInTransaction(tx: Queryable, actor: Actor, id: number, reason: string, at: Date) {
  const cert = await markRevoked(tx, id, reason, at);
  if (!cert) return null;
  // A revoked certificate no longer needs its scheduled revocation.
  await completeRotationsOfOldCertificate(tx, id, at);
  await recordAudit(tx, {
    tenantId: cert.tenant_id,
    actor: actor.id,
    action: 'certificate.revoked',
    targetType: 'certificate',
    targetId: id,
    details: { device_id: cert.device_id, serial_number: cert.serial_number, reason, crl_reason: reasonNameFor(reason) },
    at,
  });
  return { ...cert, scheduled_revoke_at: null };
}

export function createRevokeCertificate({ db, clock, revocations }: Pick<AppDeps, 'db' | 'clock' | 'revocations'>) {
  return async (actor: Actor, id: number, reason: string | undefined) => {
    const text = reason?.trim() || 'unspecified';
    const certificate = await db.asTenant(actor.tenantId, (tx) => revokeInTransaction(tx, actor, id, text, clock.now()));
    if (!certificate) throw certificateNotFound(id);
    revocations.revocationCommitted();
    return { certificate, crl_reason: reasonNameFor(text) };
  };
}
