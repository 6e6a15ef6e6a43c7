import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HOUR_MS } from '../src/domain/clock.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

interface Cert {
  id: number;
  status: string;
  scheduled_revoke_at: string | null;
}

const rotate = (device: string) => `/customer/devices/${device}/certificates/rotate`;

describe.each(DRIVERS)('a device is never stranded by rotation, on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;

  const certificates = async (deviceId = 'DEVICE-001'): Promise<Map<number, Cert>> => {
    const res = await t.call('acme', 'GET', `/customer/certificates?device_id=${deviceId}`);
    expect(res.status).toBe(200);
    return new Map((res.json.certificates as Cert[]).map((c) => [c.id, c]));
  };
  const statuses = async (deviceId = 'DEVICE-001') => Object.fromEntries([...(await certificates(deviceId))].map(([id, c]) => [id, c.status]));
  const rotationStatuses = async () => {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ old_certificate_id: number; new_certificate_id: number; status: string }>(
        'SELECT old_certificate_id, new_certificate_id, status FROM certificate_rotations ORDER BY id',
      ),
    );
    return rows.map((r) => [Number(r.old_certificate_id), Number(r.new_certificate_id), r.status]);
  };
  const counts = async () => {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ certs: number; rotations: number }>(
        'SELECT (SELECT count(*) FROM device_certificates)::int AS certs, (SELECT count(*) FROM certificate_rotations)::int AS rotations',
      ),
    );
    return { certs: Number(rows[0].certs), rotations: Number(rows[0].rotations) };
  };
  const tick = () => t.service.useCases.applyScheduledRevocations();
  const newDevice = async (deviceId: string) => {
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
    const gen = await t.call('acme', 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
    expect(gen.status).toBe(201);
    return gen.json.certificate.id as number;
  };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    t.clock.set(new Date());
    expect(await newDevice('DEVICE-001')).toBe(1);
  });

  it('rotate while a rotation is pending answers 409 ROTATION_PENDING with the pending rotation, and issues nothing', async () => {
    const first = await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256', revoke_old_after_hours: 6 });
    expect(first.status).toBe(201);
    const before = await counts();
    for (const body of [{ key_type: 'ec-p256' }, {}]) {
      const again = await t.call('acme', 'POST', rotate('DEVICE-001'), body);
      expect(again.status).toBe(409);
      expect(again.headers['content-type']).toContain('application/problem+json');
      expect(again.json.code).toBe('ROTATION_PENDING');
      expect(again.json.pending_rotation).toMatchObject({
        device_id: 'DEVICE-001',
        new_certificate: { id: 2, status: 'ACTIVE' },
        old_certificates: [{ id: 1, status: 'ACTIVE', superseded_by: 2, scheduled_revoke_at: first.json.old_certificates[0].scheduled_revoke_at }],
      });
      expect(again.json.pending_rotation.new_certificate.cert_pem).toBeUndefined();
    }
    expect(await counts()).toEqual(before);
    expect(await statuses()).toEqual({ 1: 'ACTIVE', 2: 'ACTIVE' });
  });

  it('the start-rotation use case returns the pending rotation on conflict (for device-initiated renewal)', async () => {
    const actor = { id: 'device:acme/DEVICE-001', tenantId: 'acme' };
    const input = { validityDays: 30, revokeOldAfterHours: 2, key: { kind: 'generate' as const, keyType: 'ec-p256' as const } };
    const started = await t.service.useCases.startRotation(actor, 'DEVICE-001', input);
    expect(started.outcome).toBe('started');
    const again = await t.service.useCases.startRotation(actor, 'DEVICE-001', input);
    expect(again.outcome).toBe('pending');
    if (again.outcome !== 'pending' || started.outcome !== 'started') throw new Error('unreachable');
    expect(again.pending.new_certificate.id).toBe(started.rotation.new_certificate.id);
    expect(again.pending.new_certificate.fingerprint_sha256).toBe(started.rotation.new_certificate.fingerprint_sha256);
    expect(again.pending.started_by).toBe('device:acme/DEVICE-001');
    expect(again.newCertificatePem).toBe(started.rotation.cert_pem);
  });

  it('revoking the new certificate of a pending rotation cancels it: the old one stays ACTIVE without a schedule', async () => {
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256', revoke_old_after_hours: 1 })).status).toBe(201);
    const revoked = await t.call('acme', 'POST', '/customer/certificates/2/revoke', { reason: 'keyCompromise' });
    expect(revoked.status).toBe(200);
    expect(await rotationStatuses()).toEqual([[1, 2, 'CANCELLED']]);
    expect((await certificates()).get(1)).toMatchObject({ status: 'ACTIVE', scheduled_revoke_at: null });
    expect((await t.call('acme', 'GET', '/customer/devices/DEVICE-001/certificates/rotation')).status).toBe(404);
    t.clock.advance(2 * HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 0 });
    expect(await statuses()).toEqual({ 1: 'ACTIVE', 2: 'REVOKED' });
    // The device can be rotated again.
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256' })).status).toBe(201);
  });

  it('the worker never revokes the old certificates of a rotation whose new certificate is no longer ACTIVE', async () => {
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256', revoke_old_after_hours: 1 })).status).toBe(201);
    // The new certificate left ACTIVE without going through the application (expired, or data from before this rule).
    await database.db.asOperator((tx) => tx.query(`UPDATE device_certificates SET status = 'EXPIRED' WHERE id = 2`));
    t.clock.advance(HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 0 });
    expect(await statuses()).toEqual({ 1: 'ACTIVE', 2: 'EXPIRED' });
    expect(await rotationStatuses()).toEqual([[1, 2, 'CANCELLED']]);
  });

  it('revoking an already revoked certificate answers 409 CERTIFICATE_ALREADY_REVOKED; an unknown one 404', async () => {
    expect((await t.call('acme', 'POST', '/customer/certificates/1/revoke', {})).status).toBe(200);
    const again = await t.call('acme', 'POST', '/customer/certificates/1/revoke', { reason: 'keyCompromise' });
    expect(again.status).toBe(409);
    expect(again.json.code).toBe('CERTIFICATE_ALREADY_REVOKED');
    expect(again.json.certificate).toMatchObject({ id: 1, status: 'REVOKED', revoked_reason: 'unspecified' });
    const unknown = await t.call('acme', 'POST', '/customer/certificates/999/revoke', {});
    expect(unknown.status).toBe(404);
    expect(unknown.json.code).toBe('CERTIFICATE_NOT_FOUND');
    // Another tenant's revoked certificate stays invisible: 404, not 409.
    expect((await t.call('globex', 'POST', '/customer/certificates/1/revoke', {})).status).toBe(404);
  });

  it('lists certificates with or without a pending rotation (rotation=none|pending)', async () => {
    expect(await newDevice('DEVICE-002')).toBe(2);
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256' })).status).toBe(201);
    const ids = async (query: string) => {
      const res = await t.call('acme', 'GET', `/api/v1/customer/certificates?${query}`);
      expect(res.status, query).toBe(200);
      return { ids: (res.json.certificates as Cert[]).map((c) => c.id), total: res.json.total };
    };
    expect(await ids('rotation=pending')).toEqual({ ids: [3, 1], total: 2 });
    expect(await ids('rotation=none')).toEqual({ ids: [2], total: 1 });
    expect(await ids('rotation=none&status=ACTIVE&device_id=DEVICE-002')).toEqual({ ids: [2], total: 1 });
    const operator = await t.call(null, 'GET', '/api/v1/operator/certificates?rotation=pending');
    expect(operator.status).toBe(200);
    expect(operator.json.certificates.map((c: Cert) => c.id)).toEqual([3, 1]);
    const bad = await t.call('acme', 'GET', '/customer/certificates?rotation=maybe');
    expect(bad.status).toBe(422);
    expect(bad.json.code).toBe('VALIDATION_FAILED');
    // After cancel, nothing is pending any more.
    expect((await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel')).status).toBe(200);
    expect(await ids('rotation=pending')).toEqual({ ids: [], total: 0 });
  });

  it('cancel after the worker completed the rotation answers 409 ROTATION_COMPLETED naming the valid certificates', async () => {
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256', revoke_old_after_hours: 1 })).status).toBe(201);
    t.clock.advance(HOUR_MS);
    expect(await tick()).toMatchObject({ revoked: 1 });
    const late = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel');
    expect(late.status).toBe(409);
    expect(late.json.code).toBe('ROTATION_COMPLETED');
    expect(late.json.active_certificates.map((c: Cert) => c.id)).toEqual([2]);
    expect(await statuses()).toEqual({ 1: 'REVOKED', 2: 'ACTIVE' });
  });

  it('cancel answers with every certificate that stays valid', async () => {
    expect((await t.call('acme', 'POST', rotate('DEVICE-001'), { key_type: 'ec-p256' })).status).toBe(201);
    const cancelled = await t.call('acme', 'POST', '/customer/devices/DEVICE-001/certificates/rotate/cancel');
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.active_certificates.map((c: Cert) => c.id)).toEqual([1]);
  });

  // Registered on Postgres only: PGlite has one connection, so nothing runs in parallel there.
  it.runIf(kind === 'pg')(`cancel racing the worker at the deadline: exactly one wins and the device keeps an ACTIVE certificate (50 runs)${kind === 'pg' ? '' : ' (skipped: Postgres only: PGlite runs one transaction at a time, so nothing races)'}`, async () => {
    const outcomes = { cancel: 0, worker: 0 };
    for (let i = 0; i < 50; i++) {
      const device = `RACE-${i}`;
      const oldId = await newDevice(device);
      const rotated = await t.call('acme', 'POST', rotate(device), { key_type: 'ec-p256', revoke_old_after_hours: 1 });
      expect(rotated.status).toBe(201);
      const newId = rotated.json.new_certificate.id as number;
      t.clock.advance(HOUR_MS); // exactly at the deadline
      const [cancel, worker] = await Promise.all([t.call('acme', 'POST', `/customer/devices/${device}/certificates/rotate/cancel`), tick()]);
      const after = await statuses(device);
      const active = Object.entries(after).filter(([, s]) => s === 'ACTIVE').map(([id]) => Number(id));
      expect(active.length, `run ${i}: ${JSON.stringify(after)}`).toBeGreaterThanOrEqual(1);
      if (cancel.status === 200) {
        outcomes.cancel++;
        expect(worker.revoked, `run ${i}`).toBe(0);
        expect(after).toEqual({ [oldId]: 'ACTIVE', [newId]: 'REVOKED' });
        expect(cancel.json.active_certificates.map((c: Cert) => c.id)).toEqual([oldId]);
      } else {
        outcomes.worker++;
        expect(cancel.status, `run ${i}: ${cancel.body}`).toBe(409);
        expect(cancel.json.code).toBe('ROTATION_COMPLETED');
        expect(worker.revoked, `run ${i}`).toBe(1);
        expect(after).toEqual({ [oldId]: 'REVOKED', [newId]: 'ACTIVE' });
        expect(cancel.json.active_certificates.map((c: Cert) => c.id)).toEqual([newId]);
      }
    }
    console.info('cancel/worker race outcomes', outcomes);
    expect(outcomes.cancel + outcomes.worker).toBe(50);
  }, scaled(300_000));
});
