import { assertDeviceId } from '../domain/identifiers.ts';
import { noPendingRotation } from './confirm-rotation.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import type { Actor } from './ports.ts';
import type { TenantRepositories } from './storage-ports.ts';

/**
 * The device's pending rotation: its latest new certificate (and that certificate's PEM,
 * for callers that hand it out again) and every scheduled revocation. Null when none.
 */
export async function findPendingRotation({ rotations, certificates }: TenantRepositories, tenantId: string, deviceId: string) {
  const pending = await rotations.pendingRotationsOfDevice(tenantId, deviceId);
  const [first] = pending;
  if (!first) return null;
  // Certificate ids grow: the latest rotation's new certificate has the highest id.
  const latest = pending.reduce((a, r) => (r.new_certificate_id > a.new_certificate_id ? r : a), first);
  const newest = latest.new_certificate_id;
  const { cert_pem: newCertificatePem, ...newCertificate } = (await certificates.findCertificate(newest))!;
  const view = {
    device_id: deviceId,
    new_certificate: newCertificate,
    next_revoke_at: first.scheduled_revoke_at,
    started_by: latest.started_by,
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
  return { view, newCertificatePem };
}

export type PendingRotationView = NonNullable<Awaited<ReturnType<typeof findPendingRotation>>>['view'];

/** The device's pending rotation. 404 when none. */
export function createGetRotation({ storage }: Pick<AppDeps, 'storage'>) {
  return async (actor: Actor, deviceId: string) => {
    assertDeviceId(deviceId);
    return storage.asTenant(actor.tenantId, async (repos) => {
      if (!(await repos.devices.findDevice(actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      const found = await findPendingRotation(repos, actor.tenantId, deviceId);
      if (!found) throw noPendingRotation(deviceId);
      return found.view;
    });
  };
}
