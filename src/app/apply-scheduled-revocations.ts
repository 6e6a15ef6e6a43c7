import type { AppDeps } from './deps.ts';
import type { Actor } from './ports.ts';
import { revokeInTransaction } from './revoke-certificate.ts';
import type { PendingRotation, TenantRepositories } from './storage-ports.ts';

/** The reason a rotation revokes with (RFC 5280 `superseded`). */
export const ROTATION_REVOCATION_REASON = 'superseded';

/**
 * Ends one pending rotation row in the caller's transaction, which holds the row's new
 * certificate locked: revokes its old certificate (which completes the row, with its audit
 * event), or, when that certificate is no longer ACTIVE (revoked by hand, expired), only
 * completes the row. An old certificate is never revoked unless its replacement is ACTIVE:
 * otherwise the row is cancelled and the old certificate keeps the device connected.
 * Returns the revoked certificate, or null.
 */
export async function revokeSupersededInTransaction(repos: TenantRepositories, actor: Actor, rotation: PendingRotation, at: Date) {
  if (rotation.new_status !== 'ACTIVE') {
    await repos.rotations.cancelRotationsOf(rotation.tenant_id, rotation.device_id, rotation.new_certificate_id, at);
    return null;
  }
  if (rotation.revoke_old === false) {
    // Superseded is not compromised (renewal policy revoke_superseded false): the old certificate
    // is left to expire, never listed on the CRL; it can renew nothing more (CERTIFICATE_SUPERSEDED).
    await repos.rotations.completeRotation(rotation.id, at);
    await repos.audit.recordAudit({
      tenantId: rotation.tenant_id,
      actor: actor.id,
      action: 'certificate.superseded',
      targetType: 'certificate',
      targetId: rotation.old_certificate_id,
      details: { device_id: rotation.device_id, fingerprint: rotation.old_fingerprint, new_certificate_id: rotation.new_certificate_id, revoked: false, expires_unrevoked: true },
      at,
    });
    return null;
  }
  const revoked = await revokeInTransaction(repos, actor, rotation.old_certificate_id, ROTATION_REVOCATION_REASON, at);
  if (!revoked) await repos.rotations.completeRotation(rotation.id, at);
  return revoked;
}

export interface ApplyScheduledRevocationsResult {
  /** Old certificates revoked (superseded) by this run. */
  revoked: number;
  /** Due rows closed without a revocation: their old certificate was no longer ACTIVE, or their new one was not (cancelled). */
  completed: number;
  batches: number;
}

export const APPLY_SCHEDULED_REVOCATIONS_ACTOR = 'system:apply-scheduled-revocations';

/**
 * System-wide: revokes every old certificate whose scheduled_revoke_at has passed. Runs as
 * the operator role in batches of one transaction each. Idempotent, and safe when several
 * workers run it at once (rows are claimed with FOR UPDATE SKIP LOCKED and the revocation
 * itself is conditional on ACTIVE, so a certificate is revoked exactly once). The worker's
 * periodic tick calls it; the CRL publisher is told after every batch that revoked something.
 */
export function createApplyScheduledRevocations({ storage, clock, revocations }: Pick<AppDeps, 'storage' | 'clock' | 'revocations'>) {
  return async (options: { batchSize?: number } = {}): Promise<ApplyScheduledRevocationsResult> => {
    const batchSize = options.batchSize ?? 500;
    const result: ApplyScheduledRevocationsResult = { revoked: 0, completed: 0, batches: 0 };
    for (;;) {
      const now = clock.now();
      const batch = await storage.asOperator(async (repos) => {
        const due = await repos.rotations.claimDueRotations(now, batchSize);
        let revoked = 0;
        for (const rotation of due) {
          const actor = { id: APPLY_SCHEDULED_REVOCATIONS_ACTOR, tenantId: rotation.tenant_id };
          if (await revokeSupersededInTransaction(repos, actor, rotation, now)) revoked++;
        }
        return { claimed: due.length, revoked };
      });
      if (batch.claimed === 0) break;
      result.batches++;
      result.revoked += batch.revoked;
      result.completed += batch.claimed - batch.revoked;
      if (batch.revoked > 0) revocations.revocationCommitted();
      if (batch.claimed < batchSize) break;
    }
    return result;
  };
}
