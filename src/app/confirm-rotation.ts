import { AppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { recordAudit } from '../storage/repos/audit-repo.ts';
import { lockDevice } from '../storage/repos/devices-repo.ts';
import { pendingRotationsOfDevice } from '../storage/repos/rotations-repo.ts';
import { revokeSupersededInTransaction } from './apply-scheduled-revocations.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';

export const noPendingRotation = (deviceId: string) => new AppError('NO_PENDING_ROTATION', `device ${deviceId} has no pending rotation`);

/**
 * The seed's manual confirmation: the device uses its new certificate, so every old
 * certificate with a pending scheduled revocation is revoked now (reason superseded).
 */
export function createConfirmRotation({ db, clock, revocations }: Pick<AppDeps, 'db' | 'clock' | 'revocations'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    const now = clock.now();
    const revoked = await db.asTenant(actor.tenantId, async (tx) => {
      if (!(await lockDevice(tx, actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      // No row lock on the rotations here: certificates are locked before their rotation rows
      // everywhere (revoke, rotate), and the scheduled-revocation worker skips locked rows.
      const pending = await pendingRotationsOfDevice(tx, actor.tenantId, deviceId);
      if (pending.length === 0) throw noPendingRotation(deviceId);
      const revoked = [];
      for (const rotation of pending) {
        const certificate = await revokeSupersededInTransaction(tx, actor, rotation, now);
        if (certificate) revoked.push(certificate);
      }
      await recordAudit(tx, {
        tenantId: actor.tenantId,
        actor: actor.id,
        action: 'rotation.confirmed',
        targetType: 'device',
        targetId: deviceId,
        details: { revoked_certificate_ids: revoked.map((c) => c.id), rotation_ids: pending.map((r) => r.id) },
        at: now,
      });
      return revoked;
    });
    if (revoked.length > 0) revocations.revocationCommitted();
    return { device_id: deviceId, revoked_certificates: revoked };
  };
}
