/**
 * Use cases on the in-memory storage (test/support/memory-storage.ts): rotation with its
 * scheduled revocation, revocation (keyCompromise, no second revocation, a revoked replacement
 * cancels the rotation), expiry alerts (open, escalate, close as rotated, CERT_EXPIRED when the
 * last certificate expires) and the all-or-nothing unit of work, in milliseconds. The same
 * behaviours keep their real-database tests (rotation.test.ts, rotation-safety.test.ts,
 * device-keys.test.ts, api-certificates.test.ts, worker-alerts.test.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createMarkExpired } from '../src/app/mark-expired.ts';
import { createRaiseExpiryAlerts } from '../src/app/raise-expiry-alerts.ts';
import { createUseCases } from '../src/app/use-cases.ts';
import { createManualClock, DAY_MS, HOUR_MS } from '../src/domain/clock.ts';
import { createExpiryPolicy, SEVERITY } from '../src/domain/expiry-policy.ts';
import { createRateLimiter } from '../src/domain/rate-limit.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { createKeySource } from '../src/pki/key-source.ts';
import type { CertificateAuthority } from '../src/app/ports.ts';
import { createMemoryStorage } from './support/memory-storage.ts';

const START = '2026-03-01T00:00:00Z';
const acme = { id: 'test:acme', tenantId: 'acme' };

describe('use cases on the in-memory storage', () => {
  let authority: CertificateAuthority;

  beforeAll(async () => {
    const ca = await createDeviceCa({ keyType: 'ec-p256', now: new Date('2026-01-01T00:00:00Z') });
    authority = createCertificateAuthority(await deviceCaFromPem(ca.certPem, ca.keyPem), { crlUrl: 'http://certfleet.test/crl' });
  });

  function setUp() {
    const storage = createMemoryStorage();
    const clock = createManualClock(START);
    let committed = 0;
    const useCases = createUseCases({
      storage,
      clock,
      authority,
      keys: createKeySource(null),
      revocations: { revocationCommitted: () => void committed++ },
      issuanceLimit: createRateLimiter({ perMinute: 10_000, burst: 10_000, now: () => clock.now().getTime(), what: 'issuance' }),
      secrets: { seal: (plain) => plain },
      settings: { rotationGraceHours: 24, webhookAllowPrivateNetworks: false },
    });
    return { storage, clock, useCases, revocationsCommitted: () => committed };
  }

  async function deviceWithCertificate(u: ReturnType<typeof setUp>['useCases'], deviceId: string) {
    await u.registerDevice(acme, { device_id: deviceId });
    return (await u.issueCertificate(acme, deviceId, { validityDays: 30, key: { kind: 'generate', keyType: 'ec-p256' } })).certificate;
  }

  it('rotation: the old certificate stays ACTIVE through the grace period, then is revoked as superseded', async () => {
    const { storage, clock, useCases, revocationsCommitted } = setUp();
    const old = await deviceWithCertificate(useCases, 'DEV-1');
    const rotation = await useCases.rotateCertificate(acme, 'DEV-1', { validityDays: 30, revokeOldAfterHours: 2, key: { kind: 'generate', keyType: 'ec-p256' } });
    expect(rotation.old_certificates).toEqual([expect.objectContaining({ id: old.id, status: 'ACTIVE' })]);
    await expect(useCases.rotateCertificate(acme, 'DEV-1', { validityDays: 30, key: { kind: 'generate', keyType: 'ec-p256' } })).rejects.toMatchObject({ code: 'ROTATION_PENDING' });

    clock.advance(2 * HOUR_MS - 1);
    expect(await useCases.applyScheduledRevocations()).toMatchObject({ revoked: 0 });
    clock.advance(1);
    expect(await useCases.applyScheduledRevocations()).toMatchObject({ revoked: 1, completed: 0 });
    expect(await useCases.applyScheduledRevocations()).toMatchObject({ revoked: 0, batches: 0 }); // idempotent
    expect(revocationsCommitted()).toBe(1);

    const certificates = storage.snapshot().certificates;
    expect(certificates.find((c) => c.id === old.id)).toMatchObject({ status: 'REVOKED', revoked_reason: 'superseded' });
    expect(certificates.find((c) => c.id === rotation.new_certificate.id)).toMatchObject({ status: 'ACTIVE' });
    expect(storage.snapshot().audit.map((e) => e.action)).toEqual(['device.registered', 'certificate.issued', 'certificate.rotated', 'certificate.revoked']);
  });

  it('revocation: once only, keyCompromise marks the key, and a revoked replacement cancels its rotation', async () => {
    const { storage, clock, useCases, revocationsCommitted } = setUp();
    const first = await deviceWithCertificate(useCases, 'DEV-2');
    const revoked = await useCases.revokeCertificate(acme, first.id, 'keyCompromise');
    expect(revoked.certificate).toMatchObject({ status: 'REVOKED', revoked_reason: 'keyCompromise' });
    expect(storage.snapshot().compromised).toHaveLength(1);
    await expect(useCases.revokeCertificate(acme, first.id, 'superseded')).rejects.toMatchObject({ code: 'CERTIFICATE_ALREADY_REVOKED' });
    await expect(useCases.revokeCertificate({ id: 'test:other', tenantId: 'other' }, first.id, undefined)).rejects.toMatchObject({ code: 'CERTIFICATE_NOT_FOUND' });

    const kept = (await useCases.issueCertificate(acme, 'DEV-2', { validityDays: 30, key: { kind: 'generate', keyType: 'ec-p256' } })).certificate;
    const rotation = await useCases.rotateCertificate(acme, 'DEV-2', { validityDays: 30, revokeOldAfterHours: 1, key: { kind: 'generate', keyType: 'ec-p256' } });
    await useCases.revokeCertificate(acme, rotation.new_certificate.id, 'unspecified'); // the replacement is bad
    clock.advance(HOUR_MS);
    expect(await useCases.applyScheduledRevocations()).toMatchObject({ revoked: 0 });
    expect(storage.snapshot().certificates.find((c) => c.id === kept.id)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
    expect(revocationsCommitted()).toBe(2);
  });

  it('a unit of work that throws leaves nothing behind', async () => {
    const { storage } = setUp();
    await expect(
      storage.asTenant('acme', async ({ devices }) => {
        await devices.insertDevice({ tenantId: 'acme', deviceId: 'DEV-3', siteId: null, now: new Date(START) });
        throw new Error('fails after the insert');
      }),
    ).rejects.toThrow('fails after the insert');
    expect(storage.snapshot().devices).toEqual([]);
    await expect(storage.asTenant('acme', ({ alerts }) => alerts.listAlerts({ tenantId: 'acme', limit: 1 } as never))).rejects.toThrow(/alerts.listAlerts is not implemented/);
  });

  it('expiry alerts: opened inside the window, escalated as it nears, closed as rotated; CERT_EXPIRED when the last certificate expires', async () => {
    const { storage, clock, useCases } = setUp();
    const raise = createRaiseExpiryAlerts({ storage, clock, policy: createExpiryPolicy({ warningDays: 30, highDays: 7, criticalDays: 1 }) });
    const markExpired = createMarkExpired({ storage, clock });
    const rotated = await deviceWithCertificate(useCases, 'DEV-4'); // 30 days
    await deviceWithCertificate(useCases, 'DEV-5');

    expect(await raise()).toMatchObject({ opened: 2, escalated: 0, closed: 0 }); // 30 days left: inside the 30-day window
    clock.advance(DAY_MS);
    expect(await raise()).toMatchObject({ opened: 0, escalated: 0, closed: 0 }); // a second run changes nothing
    clock.advance(23 * DAY_MS); // 6 days left: HIGH
    expect(await raise()).toMatchObject({ opened: 0, escalated: 2 });
    expect(storage.snapshot().alerts.map((a) => a.severity)).toEqual([SEVERITY.HIGH, SEVERITY.HIGH]);

    // The replacement is valid beyond the warning window (a 30-day one would itself be inside it).
    await useCases.rotateCertificate(acme, 'DEV-4', { validityDays: 60, revokeOldAfterHours: 1, key: { kind: 'generate', keyType: 'ec-p256' } });
    expect(await raise()).toMatchObject({ opened: 0, closed: 1, closed_by_reason: { rotated: 1 } });
    expect(storage.snapshot().alerts.find((a) => a.details.certificate_id === rotated.id)).toMatchObject({ status: 'CLOSED', close_reason: 'rotated' });

    clock.advance(7 * DAY_MS); // DEV-5's only certificate is past not_after; DEV-4's rotated old one too, but DEV-4 has a valid one
    expect(await markExpired()).toEqual({ expired: 2, devicesWithoutCertificate: 1 });
    expect(await markExpired()).toEqual({ expired: 0, devicesWithoutCertificate: 0 });
    const expiredAlert = storage.snapshot().alerts.find((a) => a.alert_type === 'CERT_EXPIRED');
    expect(expiredAlert).toMatchObject({ device_id: 'DEV-5', status: 'OPEN', severity: SEVERITY.CRITICAL });
    expect(await raise()).toMatchObject({ closed_by_reason: { expired: 1 } }); // DEV-5's CERT_EXPIRING alert
    expect(storage.snapshot().alertEvents.map((e) => e.event)).toEqual(['alert.opened', 'alert.opened', 'alert.escalated', 'alert.escalated', 'alert.closed', 'alert.opened', 'alert.closed']);
  });
});
