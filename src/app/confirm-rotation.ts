import { AppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import { revokeSupersededInTransaction } from './apply-scheduled-revocations.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';
import type { TenantRepositories } from './storage-ports.ts';

export const noPendingRotation = (deviceId: string, extensions?: Record<string, unknown>) =>
  new AppError('NO_PENDING_ROTATION', `device ${deviceId} has no pending rotation`, undefined, extensions);

/**
 * The device's pending rows with their new certificates locked, read again after the lock.
 * Lock order everywhere: device, then certificates, then rotation rows. Holding the new
 * certificate, nobody can revoke it and the worker skips its rows; what was decided before
 * the lock (the worker finished first) is seen here.
 */
export async function lockPendingRotations({ rotations, certificates }: TenantRepositories, tenantId: string, deviceId: string) {
  const seen = await rotations.pendingRotationsOfDevice(tenantId, deviceId);
  for (const id of [...new Set(seen.map((r) => r.new_certificate_id))].sort((a, b) => a - b)) await certificates.lockCertificate(id);
  return rotations.pendingRotationsOfDevice(tenantId, deviceId);
}

/**
 * The seed's manual confirmation: the device uses its new certificate, so every old
 * certificate with a pending scheduled revocation is revoked now (reason superseded).
 */
export function createConfirmRotation({ storage, clock, revocations }: Pick<AppDeps, 'storage' | 'clock' | 'revocations'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    const now = clock.now();
    const revoked = await storage.asTenant(actor.tenantId, async (repos) => {
      if (!(await repos.devices.lockDevice(actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      // No row lock on the rotations: the old certificates are locked (revoked) before their
      // rows, as a concurrent revocation does; the worker skips rows whose certificates are locked.
      const pending = await lockPendingRotations(repos, actor.tenantId, deviceId);
      if (pending.length === 0) throw noPendingRotation(deviceId);
      const revoked = [];
      for (const rotation of pending) {
        const certificate = await revokeSupersededInTransaction(repos, actor, rotation, now);
        if (certificate) revoked.push(certificate);
      }
      await repos.audit.recordAudit({
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
