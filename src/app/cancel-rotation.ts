import { assertEndEntityReason } from '../domain/revocation-reasons.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import { activeCertificatesOfDevice } from '../storage/repos/certificates-repo.ts';
import { lockDevice } from '../storage/repos/devices-repo.ts';
import { cancelRotationsOf, pendingRotationsOfDevice } from '../storage/repos/rotations-repo.ts';
import { noPendingRotation } from './confirm-rotation.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';
import { revokeInTransaction } from './revoke-certificate.ts';

/** The new certificate never reached the device: no cause to suspect its key, it is just not needed. */
export const CANCELLED_ROTATION_REASON = 'cessationOfOperation';

/**
 * Undoes the device's latest pending rotation, for a new certificate that never reached
 * the device: revokes that new certificate and cancels the scheduled revocations it
 * created, so the certificates it superseded stay valid. An earlier rotation that is still
 * pending keeps its schedule (cancel again to undo it too).
 */
export function createCancelRotation({ db, clock, revocations }: Pick<AppDeps, 'db' | 'clock' | 'revocations'>) {
  return async (actor: Actor, deviceId: string, reason?: string) => {
    assertDeviceId(deviceId);
    const text = reason?.trim() || CANCELLED_ROTATION_REASON;
    assertEndEntityReason(text);
    const now = clock.now();
    const result = await db.asTenant(actor.tenantId, async (tx) => {
      if (!(await lockDevice(tx, actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      const pending = await pendingRotationsOfDevice(tx, actor.tenantId, deviceId);
      if (pending.length === 0) throw noPendingRotation(deviceId);
      // Certificate ids grow: the latest rotation's new certificate has the highest id.
      const newCertificateId = Math.max(...pending.map((r) => r.new_certificate_id));
      // Certificate first, then its rotation rows: the lock order every path here follows.
      const revoked = await revokeInTransaction(tx, actor, newCertificateId, text, now);
      const keptIds = await cancelRotationsOf(tx, actor.tenantId, deviceId, newCertificateId, now);
      await recordAudit(tx, {
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'rotation.cancelled',
        targetType: 'device',
        targetId: deviceId,
        details: { new_certificate_id: newCertificateId, revoked: revoked !== null, reason: text, kept_certificate_ids: keptIds },
        at: now,
      });
      const active = await activeCertificatesOfDevice(tx, actor.tenantId, deviceId);
      return { newCertificateId, revoked, kept: active.filter((c) => keptIds.includes(c.id)) };
    });
    if (result.revoked) revocations.revocationCommitted();
    return {
      device_id: deviceId,
      cancelled_certificate_id: result.newCertificateId,
      revoked_certificate: result.revoked,
      kept_certificates: result.kept,
    };
  };
}
