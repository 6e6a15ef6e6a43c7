import { assertDeviceId } from '../domain/identifiers.ts';
import { findCertificate } from '../storage/repos/certificates-repo.ts';
import { findDevice } from '../storage/repos/devices-repo.ts';
import { pendingRotationsOfDevice } from '../storage/repos/rotations-repo.ts';
import { noPendingRotation } from './confirm-rotation.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';

/** The device's pending rotation: its latest new certificate and every scheduled revocation. 404 when none. */
export function createGetRotation({ db }: Pick<AppDeps, 'db'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    return db.asTenant(actor.tenantId, async (tx) => {
      if (!(await findDevice(tx, actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      const pending = await pendingRotationsOfDevice(tx, actor.tenantId, deviceId);
      if (pending.length === 0) throw noPendingRotation(deviceId);
      const latest = await findCertificate(tx, Math.max(...pending.map((r) => r.new_certificate_id)));
      const { cert_pem: _pem, ...newCertificate } = latest!;
      return {
        device_id: deviceId,
        new_certificate: newCertificate,
        next_revoke_at: pending[0].scheduled_revoke_at,
        old_certificates: pending.map((r) => ({
          id: r.old_certificate_id,
          fingerprint: r.old_fingerprint,
          status: r.old_status,
          scheduled_revoke_at: r.scheduled_revoke_at,
          superseded_by: r.new_certificate_id,
          rotation_id: r.id,
          scheduled_at: r.created_at,
        })),
      };
    });
  };
}
