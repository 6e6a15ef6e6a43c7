import { AppError } from '../domain/errors.ts';
import { assertEndEntityReason } from '../domain/revocation-reasons.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { lockPendingRotations, noPendingRotation } from './confirm-rotation.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';
import { revokeInTransaction } from './revoke-certificate.ts';
import type { TenantRepositories } from './storage-ports.ts';

/** The new certificate never reached the device: no cause to suspect its key, it is just not needed. */
export const CANCELLED_ROTATION_REASON = 'cessationOfOperation';

/** Nothing to cancel: 409 when the latest rotation already completed (the worker or a confirm won), else 404; both name the valid certificates. */
async function nothingToCancel({ certificates, rotations }: TenantRepositories, tenantId: string, deviceId: string): Promise<AppError> {
  const active_certificates = await certificates.activeCertificatesOfDevice(tenantId, deviceId);
  if ((await rotations.latestRotationStatus(tenantId, deviceId)) === 'COMPLETED') {
    return new AppError(
      'ROTATION_COMPLETED',
      `the rotation of device ${deviceId} already completed: its old certificates are revoked and the new certificate stays valid`,
      undefined,
      { active_certificates },
    );
  }
  return noPendingRotation(deviceId, { active_certificates });
}

/**
 * Undoes the device's latest pending rotation, for a new certificate that never reached
 * the device: revokes that new certificate and cancels the scheduled revocations it
 * created, so the certificates it superseded stay valid. Racing the worker at the
 * deadline, exactly one wins: the new certificate is locked first, so either the worker
 * has already revoked the old certificates (409 ROTATION_COMPLETED, the new one stays
 * ACTIVE) or it skips them (the cancel revokes the new one). The answer names the
 * certificates that stay valid.
 */
export function createCancelRotation({ storage, clock, revocations }: Pick<AppDeps, 'storage' | 'clock' | 'revocations'>) {
  return async (actor: Actor, deviceId: string, reason?: string) => {
    assertDeviceId(deviceId);
    const text = reason?.trim() || CANCELLED_ROTATION_REASON;
    assertEndEntityReason(text);
    const now = clock.now();
    const result = await storage.asTenant(actor.tenantId, async (repos) => {
      if (!(await repos.devices.lockDevice(actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      const pending = await lockPendingRotations(repos, actor.tenantId, deviceId);
      if (pending.length === 0) throw await nothingToCancel(repos, actor.tenantId, deviceId);
      const newCertificateId = Math.max(...pending.map((r) => r.new_certificate_id));
      const keptIds = pending.filter((r) => r.new_certificate_id === newCertificateId).map((r) => r.old_certificate_id).sort((a, b) => a - b);
      const revoked = await revokeInTransaction(repos, actor, newCertificateId, text, now);
      // Already cancelled by the revocation, unless the new certificate was no longer ACTIVE (expired).
      await repos.rotations.cancelRotationsOf(actor.tenantId, deviceId, newCertificateId, now);
      await repos.audit.recordAudit({
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'rotation.cancelled',
        targetType: 'device',
        targetId: deviceId,
        details: { new_certificate_id: newCertificateId, revoked: revoked !== null, reason: text, kept_certificate_ids: keptIds },
        at: now,
      });
      const active = await repos.certificates.activeCertificatesOfDevice(actor.tenantId, deviceId);
      return { newCertificateId, revoked, kept: active.filter((c) => keptIds.includes(c.id)), active };
    });
    if (result.revoked) revocations.revocationCommitted();
    return {
      device_id: deviceId,
      cancelled_certificate_id: result.newCertificateId,
      revoked_certificate: result.revoked,
      kept_certificates: result.kept,
      active_certificates: result.active,
    };
  };
}
