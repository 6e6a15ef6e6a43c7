import { HOUR_MS } from '../domain/clock.ts';
import { DEVICE_KEY_NOTE, MAX_ROTATION_GRACE_HOURS, PRIVATE_KEY_WARNING } from '../domain/certificate.ts';
import { AppError } from '../domain/errors.ts';
import { assertDeviceId } from '../domain/identifiers.ts';
import type { AppDeps } from './deps.ts';
import { deviceNotFound } from './get-device.ts';
import { findPendingRotation, type PendingRotationView } from './get-rotation.ts';
import type { Actor } from './ports.ts';
import { createSignDeviceCertificate, storeCertificate, type KeyRequest } from './sign-device-certificate.ts';

export interface RotateInput {
  /** undefined: the tenant's renewal policy. */
  validityDays?: number;
  /** null or undefined: the configured default (ROTATION_GRACE_HOURS). */
  revokeOldAfterHours?: number | null;
  key: KeyRequest;
  /** false: when the rotation ends the old certificates are left to expire instead of being revoked (device renewals under revoke_superseded false). */
  revokeOld?: boolean;
}

export const rotationPending = (pending: PendingRotationView) =>
  new AppError(
    'ROTATION_PENDING',
    `device ${pending.device_id} has a pending rotation (new certificate ${pending.new_certificate.id}): confirm or cancel it before rotating again`,
    undefined,
    { pending_rotation: pending },
  );

/**
 * Starts a rotation: issues a new certificate and schedules the revocation of the device's
 * ACTIVE ones after a grace period, atomically (the certificate and its schedule commit
 * together, under the device row lock). A device has at most one pending rotation: when one
 * is pending, nothing is issued and the pending rotation is returned (with its new
 * certificate's PEM), so a caller can answer 409 or, for a device asking again, hand out the
 * same certificate. No ACTIVE certificate: a plain issue.
 */
export function createStartRotation(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'settings' | 'issuanceLimit'>) {
  const sign = createSignDeviceCertificate(deps);
  return async (actor: Actor, deviceId: string, input: RotateInput) => {
    assertDeviceId(deviceId);
    const graceHours = input.revokeOldAfterHours ?? deps.settings.rotationGraceHours;
    if (!Number.isInteger(graceHours) || graceHours < 1 || graceHours > MAX_ROTATION_GRACE_HOURS) {
      throw new AppError('VALIDATION_FAILED', `revoke_old_after_hours must be an integer from 1 to ${MAX_ROTATION_GRACE_HOURS}`);
    }
    const pendingOutcome = (found: NonNullable<Awaited<ReturnType<typeof findPendingRotation>>>) =>
      ({ outcome: 'pending', pending: found.view, newCertificatePem: found.newCertificatePem }) as const;
    // Checked before any key work, so a rotation run twice signs nothing the second time.
    const before = await deps.storage.asTenant(actor.tenantId, async (repos) => {
      if (!(await repos.devices.findDevice(actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      return findPendingRotation(repos, actor.tenantId, deviceId);
    });
    if (before) return pendingOutcome(before);

    // Key generation and signing before the transaction: no lock is held during RSA keygen.
    const signed = await sign(actor.tenantId, deviceId, input.validityDays, input.key);
    const at = signed.signedAt;
    const revokeAt = new Date(at.getTime() + graceHours * HOUR_MS);

    const stored = await deps.storage.asTenant(actor.tenantId, async (repos) => {
      if (!(await repos.devices.lockDevice(actor.tenantId, deviceId))) throw deviceNotFound(deviceId);
      // A concurrent rotation won the device lock: the certificate signed above is dropped, never stored nor returned.
      const raced = await findPendingRotation(repos, actor.tenantId, deviceId);
      if (raced) return pendingOutcome(raced);
      const active = await repos.certificates.activeCertificatesOfDevice(actor.tenantId, deviceId, { lock: true });
      const certificate = await storeCertificate(repos, actor, deviceId, { ...signed.issued, spkiSha256: signed.spkiSha256 }, at, 'certificate.rotated', {
        key_source: input.key.kind,
        key_type: signed.issued.keyType,
        grace_period_hours: graceHours,
        old_certificate_ids: active.map((c) => c.id),
      });
      const old = [];
      for (const c of active) {
        const schedule = await repos.rotations.scheduleRevocation({
          tenantId: actor.tenantId,
          deviceId,
          newCertificateId: certificate.id,
          oldCertificateId: c.id,
          revokeAt,
          now: at,
          startedBy: actor.id,
          revokeOld: input.revokeOld ?? true,
        });
        old.push({ id: c.id, fingerprint: c.fingerprint_sha256, status: c.status, scheduled_revoke_at: schedule.scheduled_revoke_at });
      }
      return { outcome: 'started', certificate, old } as const;
    });
    if (stored.outcome === 'pending') return stored;
    const { certificate, old } = stored;

    const keyWarning = signed.privateKeyPem ? PRIVATE_KEY_WARNING : DEVICE_KEY_NOTE;
    const oldWarning = old.length
      ? `Old certificates will remain active for at most ${graceHours} hours (see scheduled_revoke_at); confirm the rotation to revoke them sooner.`
      : 'The device had no active certificate; nothing is scheduled for revocation.';
    const rotation = {
      new_certificate: certificate,
      cert_pem: signed.issued.certPem,
      ...(signed.privateKeyPem ? { private_key_pem: signed.privateKeyPem } : {}),
      ca_cert_pem: signed.issued.issuerPem ?? deps.authority.issuerPemOf(signed.issued.certPem) ?? deps.authority.caCertPem(actor.tenantId),
      old_certificates: old,
      grace_period_hours: graceHours,
      warning: [keyWarning, oldWarning, signed.validityWarning].filter(Boolean).join(' '),
    };
    return { outcome: 'started', rotation } as const;
  };
}

/** The operator/customer API's rotate: a pending rotation is a 409 ROTATION_PENDING carrying it. */
export function createRotateCertificate(deps: Pick<AppDeps, 'storage' | 'authority' | 'keys' | 'clock' | 'settings' | 'issuanceLimit'>) {
  const start = createStartRotation(deps);
  return async (actor: Actor, deviceId: string, input: RotateInput) => {
    const result = await start(actor, deviceId, input);
    if (result.outcome === 'pending') throw rotationPending(result.pending);
    return result.rotation;
  };
}
