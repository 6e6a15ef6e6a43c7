import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../src/domain/clock.ts';
import type { RevocationListener } from '../src/app/ports.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { opensslCsr, opensslVerify } from './support/openssl.ts';

interface Cert {
  id: number;
  status: string;
  revoked_reason: string | null;
  revoked_at: string | null;
  scheduled_revoke_at: string | null;
  fingerprint_sha256: string;
  key_type: string;
}

interface RotationRow {
  old_certificate_id: number;
  new_certificate_id: number;
  status: string;
  scheduled_revoke_at: string;
}

const ROTATE = '/customer/devices/DEVICE-001/certificates/rotate';
const isoIn = (from: Date, hours: number) => new Date(from.getTime() + hours * HOUR_MS).toISOString();

describe.each(oneDriver('pglite'))('certificate rotation on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let caPem: string;
  /** The first certificate of DEVICE-001 (id 1), made by beforeEach. */
  let first: { id: number; certPem: string; fingerprint: string };
  let notified = 0;
  const revocations: RevocationListener = { revocationCommitted: () => void notified++ };

  const certificates = async (deviceId = 'DEVICE-001', tenant = 'acme'): Promise<Map<number, Cert>> => {
    const res = await t.call(tenant, 'GET', `/customer/certificates?device_id=${deviceId}`);
    expect(res.status).toBe(200);
    return new Map((res.json.certificates as Cert[]).map((c) => [c.id, c]));
  };
  const rotationRows = async (status?: string): Promise<RotationRow[]> => {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<RotationRow>(
        `SELECT old_certificate_id, new_certificate_id, status, scheduled_revoke_at FROM certificate_rotations
         ${status ? 'WHERE status = $1' : ''} ORDER BY old_certificate_id`,
        status ? [status] : [],
      ),
    );
    return rows.map((r) => ({ ...r, scheduled_revoke_at: new Date(r.scheduled_revoke_at).toISOString() }));
  };
  const counts = async () => {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ certs: number; rotations: number; audit: number }>(
        `SELECT (SELECT count(*) FROM device_certificates)::int8 AS certs, (SELECT count(*) FROM certificate_rotations)::int8 AS rotations,
                (SELECT count(*) FROM audit_events)::int8 AS audit`,
      ),
    );
    return { certs: Number(rows[0].certs), rotations: Number(rows[0].rotations), audit: Number(rows[0].audit) };
  };
  const auditActions = async (action: string) => {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ actor: string; target_id: string; details: unknown }>('SELECT actor, target_id, details FROM audit_events WHERE action = $1 ORDER BY id', [action]),
    );
    return rows.map((r) => ({ ...r, details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown> }));
  };
  const tick = () => t.service.useCases.applyScheduledRevocations();

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database, { overrides: { revocations } });
    caPem = t.service.ca.ca!.certPem;
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    t.clock.set(new Date()); // openssl verifies against the wall clock
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001', site_id: 'site1' })).status).toBe(201);
    const gen = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/generate', { key_type: 'ec-p256' });
    expect(gen.status).toBe(201);
    first = { id: gen.json.certificate.id, certPem: gen.json.cert_pem, fingerprint: gen.json.certificate.fingerprint_sha256 };
    expect(first.id).toBe(1);
    notified = 0;
  });

  it('keeps both certificates ACTIVE (and valid for openssl) during the grace period, then revokes the old one as superseded', async () => {
    const start = t.clock.now();
    const res = await t.call('acme', 'POST', ROTATE, { validity_days: 365, revoke_old_after_hours: 24, key_type: 'ec-p256' });
    expect(res.status).toBe(201);
    const { new_certificate, cert_pem, private_key_pem, ca_cert_pem, old_certificates, grace_period_hours, warning } = res.json;
    expect(new_certificate).toMatchObject({ id: 2, device_id: 'DEVICE-001', status: 'ACTIVE', key_type: 'ec-p256', common_name: 'acme/DEVICE-001', scheduled_revoke_at: null });
    expect(private_key_pem).toContain('PRIVATE KEY');
    expect(ca_cert_pem).toBe(caPem);
    expect(old_certificates).toEqual([{ id: 1, fingerprint: first.fingerprint, status: 'ACTIVE', scheduled_revoke_at: isoIn(start, 24) }]);
    expect(grace_period_hours).toBe(24);
    expect(warning).toMatch(/private key/i);
    expect(warning).toContain('24 hours');

    // During the grace period: both ACTIVE, both verify, the old one shows its schedule.
    expect(opensslVerify(caPem, first.certPem).code).toBe(0);
    expect(opensslVerify(caPem, cert_pem).code).toBe(0);
    let listed = await certificates();
    expect(listed.get(1)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: isoIn(start, 24) });
    expect(listed.get(2)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
    const shown = await t.call('acme', 'GET', '/api/v1/customer/devices/DEVICE-001/certificates/rotation');
    expect(shown.status).toBe(200);
    expect(shown.json).toMatchObject({ device_id: 'DEVICE-001', new_certificate: { id: 2 }, next_revoke_at: isoIn(start, 24) });
    expect(shown.json.old_certificates).toMatchObject([{ id: 1, status: 'ACTIVE', superseded_by: 2, scheduled_revoke_at: isoIn(start, 24) }]);

    t.clock.advance(24 * HOUR_MS - 1000);
    expect(await tick()).toMatchObject({ revoked: 0 });
    expect((await certificates()).get(1)!.status).toBe('ACTIVE');
    expect(notified).toBe(0);

    t.clock.advance(1000);
    expect(await tick()).toEqual({ revoked: 1, completed: 0, batches: 1 });
    listed = await certificates();
    expect(listed.get(1)).toMatchObject({ status: 'REVOKED', revoked_reason: 'superseded', revoked_at: isoIn(start, 24), scheduled_revoke_at: null });
    expect(listed.get(2)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
    expect(notified).toBe(1);
    expect(await rotationRows()).toEqual([{ old_certificate_id: 1, new_certificate_id: 2, status: 'COMPLETED', scheduled_revoke_at: isoIn(start, 24) }]);
    const gone = await t.call('acme', 'GET', '/customer/devices/DEVICE-001/certificates/rotation');
    expect(gone.status).toBe(404);
    expect(gone.json.code).toBe('NO_PENDING_ROTATION');

    // Idempotent: a second tick finds nothing.
    t.clock.advance(HOUR_MS);
    expect(await tick()).toEqual({ revoked: 0, completed: 0, batches: 0 });
    expect(notified).toBe(1);
    const revokedAudit = await auditActions('certificate.revoked');
    expect(revokedAudit).toHaveLength(1);
    expect(revokedAudit[0]).toMatchObject({ actor: 'system:apply-scheduled-revocations', target_id: '1', details: { reason: 'superseded', crl_reason: 'superseded' } });
    const rotatedAudit = await auditActions('certificate.rotated');
    expect(rotatedAudit).toHaveLength(1);
    expect(rotatedAudit[0]).toMatchObject({ target_id: '2', details: { old_certificate_ids: [1], grace_period_hours: 24 } });
  });

  it('uses ROTATION_GRACE_HOURS when revoke_old_after_hours is null or absent, and RSA-2048 by default', async () => {
    const start = t.clock.now();
    const res = await t.call('acme', 'POST', ROTATE, { revoke_old_after_hours: null });
    expect(res.status).toBe(201);
    expect(res.json.grace_period_hours).toBe(24);
    expect(res.json.new_certificate.key_type).toBe('rsa-2048');
    expect(res.json.old_certificates[0].scheduled_revoke_at).toBe(isoIn(start, 24));
    const days = (Date.parse(res.json.new_certificate.not_after) - start.getTime()) / 86_400_000;
    expect(Math.round(days)).toBe(365);

    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/confirm')).status).toBe(200);
    const other = await startTestService(database, { env: { ROTATION_GRACE_HOURS: '2' }, clock: t.clock });
    try {
      const bare = await other.service.app.inject({
        method: 'POST',
        url: ROTATE,
        headers: { authorization: `Bearer ${await other.token('acme')}` },
      });
      expect(bare.statusCode).toBe(201);
      expect(bare.json().grace_period_hours).toBe(2);
      expect(bare.json().old_certificates).toEqual([
        { id: 2, fingerprint: res.json.new_certificate.fingerprint_sha256, status: 'ACTIVE', scheduled_revoke_at: isoIn(start, 2) },
      ]);
    } finally {
      await other.close();
    }
  });

  it('confirm revokes the old certificates of the pending rotation now and notifies the CRL publisher', async () => {
    const rotated = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 48 });
    expect(rotated.status).toBe(201);
    t.clock.advance(HOUR_MS);
    const confirmed = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/confirm');
    expect(confirmed.status).toBe(200);
    expect(confirmed.json.device_id).toBe('DEVICE-001');
    expect(confirmed.json.revoked_certificates).toMatchObject([{ id: 1, status: 'REVOKED', revoked_reason: 'superseded', revoked_at: t.clock.now().toISOString() }]);
    expect(notified).toBe(1);
    const listed = await certificates();
    expect(listed.get(1)).toMatchObject({ status: 'REVOKED', scheduled_revoke_at: null });
    expect(listed.get(2)).toMatchObject({ status: 'ACTIVE' });
    expect(await rotationRows('PENDING')).toEqual([]);

    const again = await t.call('acme', 'POST', '/api/v1/customer/devices/DEVICE-001/certificates/rotate/confirm', {});
    expect(again.status).toBe(404);
    expect(again.json.code).toBe('NO_PENDING_ROTATION');
    t.clock.advance(72 * HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 0 });
    expect(notified).toBe(1);
    expect((await certificates()).get(2)!.status).toBe('ACTIVE');
    expect(await auditActions('certificate.revoked')).toMatchObject([{ actor: 'test:acme:customer', target_id: '1', details: { reason: 'superseded' } }]);
    expect(await auditActions('rotation.confirmed')).toMatchObject([{ target_id: 'DEVICE-001', details: { revoked_certificate_ids: [1] } }]);
  });

  it('cancel revokes the new certificate that never reached the device and clears the schedule; the old one stays valid', async () => {
    const rotated = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256' });
    expect(rotated.status).toBe(201);
    const cancelled = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel');
    expect(cancelled.status).toBe(200);
    expect(cancelled.json).toMatchObject({
      device_id: 'DEVICE-001',
      cancelled_certificate_id: 2,
      revoked_certificate: { id: 2, status: 'REVOKED', revoked_reason: 'cessationOfOperation' },
      kept_certificates: [{ id: 1, status: 'ACTIVE', scheduled_revoke_at: null }],
    });
    expect(notified).toBe(1);
    expect(await rotationRows()).toMatchObject([{ old_certificate_id: 1, status: 'CANCELLED' }]);
    t.clock.advance(48 * HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 0 });
    const listed = await certificates();
    expect(listed.get(1)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
    expect(listed.get(2)).toMatchObject({ status: 'REVOKED' });
    t.clock.set(new Date());
    expect(opensslVerify(caPem, first.certPem).code).toBe(0);
    const again = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel', { reason: 'keyCompromise' });
    expect(again.status).toBe(404);
    expect(again.json.code).toBe('NO_PENDING_ROTATION');
    expect(await auditActions('certificate.revoked')).toMatchObject([{ target_id: '2', details: { reason: 'cessationOfOperation' } }]);
    expect(await auditActions('rotation.cancelled')).toMatchObject([{ target_id: 'DEVICE-001', details: { new_certificate_id: 2, kept_certificate_ids: [1] } }]);
  });

  it('rotates a device that keeps its own key from a CSR: no private key in the answer', async () => {
    const weak = await t.call('acme', 'POST', ROTATE, { csr_pem: opensslCsr('rsa-1024').csrPem });
    expect(weak.status).toBe(422);
    expect(weak.json.code).toBe('WEAK_KEY');
    const { csrPem } = opensslCsr('ec-p256', '/CN=anything');
    const res = await t.call('acme', 'POST', ROTATE, { csr_pem: csrPem, revoke_old_after_hours: 1 });
    expect(res.status).toBe(201);
    expect(res.json.private_key_pem).toBeUndefined();
    expect(res.json.warning).toContain('stays on the device');
    expect(res.json.old_certificates).toHaveLength(1);
    expect(opensslVerify(caPem, res.json.cert_pem).code).toBe(0);
    expect(await counts()).toMatchObject({ certs: 2, rotations: 1 });
  });

  it('keeps the schedule across a process restart and applies it after the grace period', async () => {
    const start = t.clock.now();
    expect((await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 6 })).status).toBe(201);
    await t.close();
    t = await startTestService(database, { dataDir: t.dataDir, clock: t.clock, overrides: { revocations } });
    expect(t.service.ca.ca!.certPem).toBe(caPem);

    const shown = await t.call('acme', 'GET', '/customer/devices/DEVICE-001/certificates/rotation');
    expect(shown.status).toBe(200);
    expect(shown.json.old_certificates).toMatchObject([{ id: 1, scheduled_revoke_at: isoIn(start, 6) }]);
    expect((await certificates()).get(1)!.scheduled_revoke_at).toBe(isoIn(start, 6));
    t.clock.advance(6 * HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 1 });
    expect((await certificates()).get(1)).toMatchObject({ status: 'REVOKED', revoked_reason: 'superseded' });
    expect(notified).toBe(1);
  });

  it('one pending rotation per device: a second rotate is refused until the first is confirmed, then schedules the certificate it made', async () => {
    const t0 = t.clock.now();
    const r1 = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 24 });
    expect(r1.status).toBe(201);
    const r2 = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 48 });
    expect(r2.status).toBe(409);
    expect(r2.json).toMatchObject({ code: 'ROTATION_PENDING', pending_rotation: { new_certificate: { id: 2 }, next_revoke_at: isoIn(t0, 24) } });
    expect(await rotationRows('PENDING')).toEqual([{ old_certificate_id: 1, new_certificate_id: 2, status: 'PENDING', scheduled_revoke_at: isoIn(t0, 24) }]);
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/confirm')).status).toBe(200);
    t.clock.advance(HOUR_MS);
    const r3 = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 2 });
    expect(r3.status).toBe(201);
    expect(r3.json.new_certificate.id).toBe(3);
    expect(r3.json.old_certificates).toMatchObject([{ id: 2, scheduled_revoke_at: isoIn(t.clock.now(), 2) }]);
    t.clock.advance(2 * HOUR_MS);
    expect(await tick()).toEqual({ revoked: 1, completed: 0, batches: 1 });
    const listed = await certificates();
    expect([1, 2, 3].map((id) => listed.get(id)!.status)).toEqual(['REVOKED', 'REVOKED', 'ACTIVE']);
  });

  it('revoking the replacement by hand cancels the rotation; the next rotation schedules the old certificate again', async () => {
    expect((await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256' })).status).toBe(201);
    expect((await t.call('acme', 'POST', '/customer/certificates/2/revoke', { reason: 'keyCompromise' })).status).toBe(200);
    expect((await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256' })).status).toBe(201);
    expect(await rotationRows('PENDING')).toMatchObject([{ old_certificate_id: 1, new_certificate_id: 3 }]);
    const cancelled = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel');
    expect(cancelled.json).toMatchObject({ cancelled_certificate_id: 3, kept_certificates: [{ id: 1 }] });
    expect((await certificates()).get(1)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
  });

  it('concurrent rotations of one device: exactly one starts, the others get 409 ROTATION_PENDING naming it', async () => {
    const results = await Promise.all([0, 1, 2].map(() => t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', revoke_old_after_hours: 5 })));
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409]);
    const started = results.find((r) => r.status === 201)!;
    for (const r of results.filter((x) => x.status === 409)) {
      expect(r.json.code).toBe('ROTATION_PENDING');
      expect(r.json.pending_rotation.new_certificate.id).toBe(started.json.new_certificate.id);
    }
    expect(await counts()).toMatchObject({ certs: 2, rotations: 1 });
    expect((await rotationRows('PENDING')).map((r) => r.old_certificate_id)).toEqual([1]);
    t.clock.advance(5 * HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 1 });
    expect([...(await certificates()).values()].filter((c) => c.status === 'ACTIVE').map((c) => c.id)).toEqual([started.json.new_certificate.id]);
  });

  it('revokes each due certificate exactly once when two workers apply the schedule at the same time', async () => {
    for (let i = 2; i <= 6; i++) {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: `DEVICE-00${i}` })).status).toBe(201);
      expect((await t.call('acme', 'POST', `/customer/devices/DEVICE-00${i}/certificates/generate`, { key_type: 'ec-p256' })).status).toBe(201);
    }
    for (let i = 1; i <= 6; i++) {
      expect((await t.call('acme', 'POST', `/customer/devices/DEVICE-00${i}/certificates/rotate`, { key_type: 'ec-p256', revoke_old_after_hours: 1 })).status).toBe(201);
    }
    t.clock.advance(HOUR_MS);
    const apply = t.service.useCases.applyScheduledRevocations;
    const [a, b] = await Promise.all([apply({ batchSize: 2 }), apply({ batchSize: 2 })]);
    expect(a.revoked + b.revoked).toBe(6);
    expect(a.completed + b.completed).toBe(0);
    const revoked = await auditActions('certificate.revoked');
    expect(revoked).toHaveLength(6);
    expect(new Set(revoked.map((r) => r.target_id)).size).toBe(6);
    expect(await rotationRows('PENDING')).toEqual([]);
    expect(await apply()).toMatchObject({ revoked: 0 });
  });

  it("answers 404 for another tenant's device and writes nothing", async () => {
    expect((await t.call('globex', 'POST', '/customer/devices', { device_id: 'G-1' })).status).toBe(201);
    const g1 = await t.call('globex', 'POST', '/customer/devices/G-1/certificates/generate', { key_type: 'ec-p256' });
    expect(g1.status).toBe(201);
    expect((await t.call('globex', 'POST', '/customer/devices/G-1/certificates/rotate', { key_type: 'ec-p256' })).status).toBe(201);
    const before = await counts();
    for (const [method, path, body] of [
      ['POST', 'rotate', { key_type: 'ec-p256' }],
      ['POST', 'rotate/confirm', undefined],
      ['POST', 'rotate/cancel', undefined],
      ['GET', 'rotation', undefined],
    ] as const) {
      const res = await t.call('acme', method, `/customer/devices/G-1/certificates/${path}`, body);
      expect(res.status, path).toBe(404);
      expect(res.json.code).toBe('DEVICE_NOT_FOUND');
    }
    expect(await counts()).toEqual(before);
    expect((await certificates('G-1', 'globex')).get(g1.json.certificate.id)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: expect.any(String) });
    expect((await t.call('acme', 'POST', '/customer/devices/NOPE/certificates/rotate', {})).status).toBe(404);
    const none = await t.call('acme', 'GET', '/customer/devices/DEVICE-001/certificates/rotation');
    expect(none.status).toBe(404);
    expect(none.json.code).toBe('NO_PENDING_ROTATION');
  });

  it('rejects bad input with 422 and writes nothing', async () => {
    const before = await counts();
    expect(before).toMatchObject({ certs: 1, rotations: 0 });
    const { csrPem } = opensslCsr('ec-p256');
    for (const body of [
      { revoke_old_after_hours: 0 },
      { revoke_old_after_hours: 721 },
      { revoke_old_after_hours: 1.5 },
      { revoke_old_after_hours: '24' },
      { validity_days: 0 },
      { validity_days: 3651 },
      { key_type: 'dsa-1024' },
      { surprise: true },
      { key_type: 'ec-p256', csr_pem: csrPem },
    ]) {
      const res = await t.call('acme', 'POST', ROTATE, body);
      expect(res.status, JSON.stringify(body).slice(0, 60)).toBe(422);
      expect(res.json.code).toBe('VALIDATION_FAILED');
    }
    const both = await t.call('acme', 'POST', ROTATE, { key_type: 'ec-p256', csr_pem: csrPem });
    expect(both.json.detail).toContain('mutually exclusive');
    const zero = await t.call('acme', 'POST', ROTATE, { revoke_old_after_hours: 0 });
    expect(zero.json.detail).toContain('revoke_old_after_hours');
    expect(await counts()).toEqual(before);
    expect(notified).toBe(0);
  });

  it('rotates a device with no ACTIVE certificate like a generate, and documents the routes', async () => {
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' })).status).toBe(201);
    const res = await t.call('acme', 'POST', '/api/v1/customer/devices/DEVICE-002/certificates/rotate', { key_type: 'ec-p256' });
    expect(res.status).toBe(201);
    expect(res.json.old_certificates).toEqual([]);
    expect(res.json.warning).toContain('nothing is scheduled');
    expect(await rotationRows()).toEqual([]);
    const docs = (await t.service.app.inject({ method: 'GET', url: '/docs/json' })).json();
    for (const path of ['rotate', 'rotate/confirm', 'rotate/cancel', 'rotation']) {
      expect(docs.paths).toHaveProperty(`/api/v1/customer/devices/{device_id}/certificates/${path}`);
    }
  });
});
