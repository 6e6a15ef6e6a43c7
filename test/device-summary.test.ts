import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS } from '../src/domain/clock.ts';
import { createMarkExpired } from '../src/app/mark-expired.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

/**
 * The certificate summary each device row carries (migration 021: status, soonest ACTIVE
 * expiry, ACTIVE count, pending rotations), kept by triggers: after every operation that
 * changes a device's certificates or rotations it equals a plain reading of those rows.
 */
describe.each(oneDriver('pg'))('device certificate summary on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    await database.reset();
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  /** Every device whose kept summary differs from its rows (none, when exact). */
  async function expectSummariesExact() {
    const { rows } = await database.db.asOperator((tx) =>
      tx.query(
        `SELECT d.tenant_id, d.device_id, d.cert_status, d.next_expiry, d.active_certificates, d.pending_rotations,
                w.cert_status AS want_status, w.next_expiry AS want_next, w.active AS want_active, w.pending AS want_pending
         FROM device_registry d
         CROSS JOIN LATERAL (
           SELECT CASE WHEN c.active > 0 THEN 'ACTIVE' WHEN c.expired THEN 'EXPIRED' WHEN c.revoked THEN 'REVOKED' ELSE 'NONE' END AS cert_status,
                  c.next_expiry, c.active, r.pending
           FROM (SELECT count(*) FILTER (WHERE status = 'ACTIVE')::int AS active, min(not_after) FILTER (WHERE status = 'ACTIVE') AS next_expiry,
                        coalesce(bool_or(status = 'EXPIRED'), false) AS expired, coalesce(bool_or(status = 'REVOKED'), false) AS revoked
                 FROM device_certificates x WHERE x.tenant_id = d.tenant_id AND x.device_id = d.device_id) c,
                (SELECT count(*)::int AS pending FROM certificate_rotations y
                 WHERE y.tenant_id = d.tenant_id AND y.device_id = d.device_id AND y.status = 'PENDING') r) w
         WHERE (d.cert_status, d.next_expiry, d.active_certificates, d.pending_rotations) IS DISTINCT FROM (w.cert_status, w.next_expiry, w.active, w.pending)`,
      ),
    );
    expect(rows).toEqual([]);
  }

  /** The device as the list shows it. */
  async function listed(deviceId: string) {
    const res = await t.call('acme', 'GET', `/customer/devices?id_prefix=${deviceId}&limit=1`);
    expect(res.status, res.body).toBe(200);
    const device = res.json.devices[0];
    expect(device.device_id).toBe(deviceId);
    return device as { certificate_status: string; next_expiry: string | null; active_certificates: number; rotation_pending: boolean };
  }

  const ok = async (method: 'POST' | 'GET', path: string, body?: unknown) => {
    const res = await t.call('acme', method, path, body);
    expect(res.status, `${method} ${path}: ${res.body}`).toBeLessThan(300);
    return res.json;
  };

  it('issue, rotate, cancel, confirm, revoke, expire, scheduled revocation and delete keep each device exact', async () => {
    const markExpired = createMarkExpired({ storage: createStorage(database.db), clock: t.clock });
    for (const id of ['SUM-A', 'SUM-B', 'SUM-C']) await ok('POST', '/customer/devices', { device_id: id, site_id: 'site-1' });
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'NONE', next_expiry: null, active_certificates: 0, rotation_pending: false });
    await expectSummariesExact();

    // issue
    const a1 = (await ok('POST', '/customer/devices/SUM-A/certificates/generate', { key_type: 'ec-p256', validity_days: 30 })).certificate;
    const b1 = (await ok('POST', '/customer/devices/SUM-B/certificates/generate', { key_type: 'ec-p256', validity_days: 1 })).certificate;
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', next_expiry: a1.not_after, active_certificates: 1, rotation_pending: false });
    await expectSummariesExact();

    // rotate: two ACTIVE, one pending rotation; the soonest expiry is still the old one
    await ok('POST', '/customer/devices/SUM-A/certificates/rotate', { key_type: 'ec-p256', validity_days: 60 });
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', next_expiry: a1.not_after, active_certificates: 2, rotation_pending: true });
    await expectSummariesExact();

    // cancel: the new certificate is revoked, the rotation cancelled
    await ok('POST', '/customer/devices/SUM-A/certificates/rotate/cancel', {});
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', next_expiry: a1.not_after, active_certificates: 1, rotation_pending: false });
    await expectSummariesExact();

    // rotate again and confirm: the old one is revoked, the new one's expiry is the device's
    const a3 = (await ok('POST', '/customer/devices/SUM-A/certificates/rotate', { key_type: 'ec-p256', validity_days: 90 })).new_certificate;
    await ok('POST', '/customer/devices/SUM-A/certificates/rotate/confirm');
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', next_expiry: a3.not_after, active_certificates: 1, rotation_pending: false });
    await expectSummariesExact();

    // revoke: no ACTIVE certificate left
    await ok('POST', `/customer/certificates/${b1.id}/revoke`, { reason: 'keyCompromise' });
    expect(await listed('SUM-B')).toMatchObject({ certificate_status: 'REVOKED', next_expiry: null, active_certificates: 0 });
    await expectSummariesExact();

    // expire: EXPIRED wins over REVOKED once nothing is ACTIVE
    await ok('POST', '/customer/devices/SUM-B/certificates/generate', { key_type: 'ec-p256', validity_days: 1 });
    expect(await listed('SUM-B')).toMatchObject({ certificate_status: 'ACTIVE', active_certificates: 1 });
    t.clock.advance(2 * DAY_MS);
    expect((await markExpired()).expired).toBe(1);
    expect(await listed('SUM-B')).toMatchObject({ certificate_status: 'EXPIRED', next_expiry: null, active_certificates: 0 });
    await expectSummariesExact();

    // a scheduled revocation applied by the worker
    await ok('POST', '/customer/devices/SUM-A/certificates/rotate', { key_type: 'ec-p256', validity_days: 120, revoke_old_after_hours: 1 });
    expect(await listed('SUM-A')).toMatchObject({ active_certificates: 2, rotation_pending: true });
    t.clock.advance(2 * HOUR_MS);
    expect((await t.service.useCases.applyScheduledRevocations()).revoked).toBe(1);
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', active_certificates: 1, rotation_pending: false });
    await expectSummariesExact();

    // delete (no route deletes certificates: the rows, as a clean-up script would)
    await database.db.asOperator((tx) => tx.query(`DELETE FROM device_certificates WHERE tenant_id = 'acme' AND device_id = 'SUM-B'`));
    expect(await listed('SUM-B')).toMatchObject({ certificate_status: 'NONE', next_expiry: null, active_certificates: 0, rotation_pending: false });
    await database.db.asOperator(async (tx) => {
      await tx.query(`DELETE FROM certificate_rotations WHERE tenant_id = 'acme' AND device_id = 'SUM-A'`);
      await tx.query(`DELETE FROM device_certificates WHERE tenant_id = 'acme' AND device_id = 'SUM-A' AND status <> 'ACTIVE'`);
    });
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', active_certificates: 1 });
    await expectSummariesExact();

    // a rolled-back change leaves the summary as it was
    await expect(
      database.db.asTenant('acme', async (tx) => {
        await tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now() WHERE tenant_id = 'acme' AND status = 'ACTIVE'`);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back'); // not the UPDATE's own failure
    expect(await listed('SUM-A')).toMatchObject({ certificate_status: 'ACTIVE', active_certificates: 1 });
    await expectSummariesExact();
  });

  it.runIf(kind === 'pg')('concurrent issuances, revocations, expiry ticks, rotations, cancels and scheduled revocations on the same devices leave every summary exact', async () => {
    const markExpired = createMarkExpired({ storage: createStorage(database.db), clock: t.clock });
    const devices = Array.from({ length: 6 }, (_, i) => `RACE-${i}`);
    for (const id of devices) {
      await ok('POST', '/customer/devices', { device_id: id });
      await ok('POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 });
    }
    // per device: two ACTIVE certificates already past not_after (for the expiry tick), two valid ones (to revoke)
    const now = t.clock.now();
    const { rows: extra } = await database.db.asOperator((tx) =>
      tx.query<{ id: number; device_id: string; past: boolean }>(
        `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, not_before, not_after)
         SELECT 'acme', d, 'pem', md5(d || k), 'acme/' || d, 'CN=race', md5(d || k), 'ec-p256', $1::timestamptz - interval '10 days',
                $1::timestamptz + CASE WHEN k <= 2 THEN interval '-1 hour' ELSE interval '10 days' END
         FROM unnest($2::text[]) d, generate_series(1, 4) k
         RETURNING id, device_id, not_after < $1 AS past`,
        [now, devices],
      ),
    );
    await expectSummariesExact();
    const calls: Promise<unknown>[] = [];
    const status = async (path: string, body?: unknown) => {
      const res = await t.call('acme', 'POST', path, body);
      expect(res.status, `${path}: ${res.body}`).toBeLessThan(500);
    };
    for (const [i, id] of devices.entries()) {
      calls.push(status(`/customer/devices/${id}/certificates/rotate`, { key_type: 'ec-p256', validity_days: 40, revoke_old_after_hours: 1 }));
      if (i % 2 === 0) calls.push(status(`/customer/devices/${id}/certificates/rotate/cancel`, {}));
      else calls.push(status(`/customer/devices/${id}/certificates/rotate/confirm`));
    }
    for (const c of extra) calls.push(status(`/customer/certificates/${c.id}/revoke`, { reason: 'superseded' }));
    for (let i = 0; i < 3; i++) calls.push(markExpired());
    // issuances among them (migration 032: an insert of ACTIVE certificates adds to the kept summary
    // instead of recomputing it), grouped (group commit), some expiring before every other ACTIVE one
    for (const [i, id] of devices.entries()) {
      for (const days of [2 + i, 60 + i]) calls.push(status(`/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256', validity_days: days }));
    }
    await Promise.all(calls);
    await expectSummariesExact();
    // and the worker's scheduled revocations racing more revocations and rotations
    t.clock.advance(2 * HOUR_MS);
    const more: Promise<unknown>[] = [t.service.useCases.applyScheduledRevocations(), t.service.useCases.applyScheduledRevocations(), markExpired()];
    for (const id of devices) more.push(status(`/customer/devices/${id}/certificates/rotate`, { key_type: 'ec-p256', validity_days: 50, revoke_old_after_hours: 1 }));
    for (const id of devices) more.push(status(`/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256', validity_days: 1 }));
    await Promise.all(more);
    await expectSummariesExact();
  });
});
