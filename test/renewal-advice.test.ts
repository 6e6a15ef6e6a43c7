/**
 * Renewal policy and server advice (issue 21, item 2): each certificate's renewal window starts at
 * a deterministic, jittered time inside the last `renewal_window` of its lifetime; the worker's
 * renewal-advice task schedules it, publishes the advice when due (retained, on the device's own
 * topic: the MQTT side is tested with a real Mosquitto in recovery-mqtt.test.ts), clears it once the
 * device renewed, and a device that has not renewed when half its window is gone gets the
 * CERT_EXPIRING alert before the usual warning window. Issuance uses the tenant's validity; EST
 * answers carry Certfleet-Renewal-Due (est-advice below, curl as the device).
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWorker, type Worker } from '../src/composition/worker.ts';
import { DAY_MS } from '../src/domain/clock.ts';

const MINUTE_MS_FOR_TEST = 60_000;
import { DEFAULT_RENEWAL_POLICY, renewalSchedule } from '../src/domain/renewal-policy.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { captureLogger } from './support/capture-logger.ts';

describe('renewal schedule (pure)', () => {
  const cert = (i: number) => ({ not_before: '2026-01-01T00:00:00Z', not_after: '2027-01-01T00:00:00Z', fingerprint_sha256: createHash('sha256').update(String(i)).digest('hex') });
  const lifetime = Date.parse('2027-01-01T00:00:00Z') - Date.parse('2026-01-01T00:00:00Z');

  it('is deterministic per certificate, inside the jittered window, and spreads a fleet issued together', () => {
    const policy = { ...DEFAULT_RENEWAL_POLICY, renewal_window: 1 / 3, jitter: 0.25 };
    const start = Date.parse('2027-01-01T00:00:00Z') - lifetime / 3;
    const latest = start + (lifetime / 3) * 0.25;
    const dues = Array.from({ length: 2000 }, (_, i) => renewalSchedule(cert(i), policy));
    expect(renewalSchedule(cert(7), policy)).toEqual(dues[7]);
    for (const d of dues) {
      expect(d.dueAt.getTime()).toBeGreaterThanOrEqual(start - 1000);
      expect(d.dueAt.getTime()).toBeLessThanOrEqual(latest);
      // overdue: half of the remaining window gone.
      expect(d.overdueAt.getTime() - d.dueAt.getTime()).toBeGreaterThan(0);
    }
    // 2000 certificates issued in the same second: their advice is spread over ~30 days, never one minute.
    const perHour = new Map<number, number>();
    for (const d of dues) perHour.set(Math.floor(d.dueAt.getTime() / 3_600_000), (perHour.get(Math.floor(d.dueAt.getTime() / 3_600_000)) ?? 0) + 1);
    expect(Math.max(...perHour.values())).toBeLessThan(20);
    // Without jitter: the window start, for everyone.
    expect(new Set(Array.from({ length: 50 }, (_, i) => renewalSchedule(cert(i), { ...policy, jitter: 0 }).dueAt.getTime())).size).toBe(1);
  });
});

describe.each(oneDriver('pglite'))('renewal advice worker on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let worker: Worker;
  const published: Array<{ cn: string; payload: string | null }> = [];
  const logs: Record<string, unknown>[] = [];

  const tick = async () => {
    const reports = await worker.runOnce();
    expect(reports.filter((r) => r.status !== 'ok'), JSON.stringify(reports)).toEqual([]);
    return Object.fromEntries(reports.map((r) => [r.task, r.counts])) as Record<string, Record<string, number>>;
  };
  const expiringAlerts = async (tenant: string) =>
    (await database.db.asOperator((tx) => tx.query<{ status: string; severity: number; details: unknown }>(`SELECT status, severity, details FROM fleet_alert WHERE tenant_id = $1 AND alert_type = 'CERT_EXPIRING' ORDER BY id`, [tenant]))).rows;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database);
    worker = await createWorker(t.config, {
      clock: t.clock,
      storage: database.storage,
      crl: null,
      logger: captureLogger(logs),
      holder: 'advice-test',
      advicePublisher: { publish: async (cn, payload) => void published.push({ cn, payload }) },
    });
  });
  afterAll(async () => {
    await worker?.close();
    await t?.close();
    await database?.close();
  });

  it('issuance uses the tenant validity; advice is scheduled, published when due, cleared after renewal; overdue raises the alert early', async () => {
    expect((await t.call('acme', 'PUT', '/customer/renewal-policy', { validity_days: 200, renewal_window: 0.5, jitter: 0.2 }, 'tenant-admin')).status).toBe(200);
    for (const [tenant, device] of [['acme', 'meter'], ['plain', 'meter']]) {
      expect((await t.call(tenant, 'POST', '/customer/devices', { device_id: device })).status).toBe(201);
    }
    // No validity_days in the request: the tenant's (200 days), or 365 without a policy.
    const acme = (await t.call('acme', 'POST', '/customer/devices/meter/certificates/generate', { key_type: 'ec-p256' })).json.certificate;
    const plain = (await t.call('plain', 'POST', '/customer/devices/meter/certificates/generate', { key_type: 'ec-p256' })).json.certificate;
    expect(Math.round((Date.parse(acme.not_after) - Date.parse(acme.not_before)) / DAY_MS)).toBe(200);
    expect(Math.round((Date.parse(plain.not_after) - Date.parse(plain.not_before)) / DAY_MS)).toBe(365);

    const policy = (await t.call('acme', 'GET', '/customer/renewal-policy')).json;
    const schedule = renewalSchedule(acme, policy);
    // Window start 100 days before notAfter; jitter moves it up to 20 days later.
    expect(Date.parse(acme.not_after) - schedule.dueAt.getTime()).toBeGreaterThan(80 * DAY_MS - 1000);
    expect(Date.parse(acme.not_after) - schedule.dueAt.getTime()).toBeLessThanOrEqual(100 * DAY_MS);

    expect((await tick())['renewal-advice']).toMatchObject({ scheduled: 0, published: 0 });
    t.clock.set(new Date(Date.parse(acme.not_after) - 100 * DAY_MS + MINUTE_MS_FOR_TEST));
    const inWindow = await tick();
    expect(inWindow['renewal-advice'].scheduled).toBe(1);
    if (schedule.dueAt.getTime() > t.clock.now().getTime()) expect(inWindow['renewal-advice'].published).toBe(0);
    t.clock.set(schedule.dueAt);
    await tick();
    const advice = published.filter((p) => p.cn === 'acme/meter' && p.payload);
    expect(advice).toHaveLength(1);
    expect(JSON.parse(advice[0].payload!)).toMatchObject({ certificate_id: acme.id, serial_number: acme.serial_number, renew_from: schedule.dueAt.toISOString(), not_after: acme.not_after });
    expect((await tick())['renewal-advice'].published).toBe(0); // once per certificate

    // Half the window gone, not renewed: CERT_EXPIRING now, ~40+ days before expiry (the usual warning is 30).
    t.clock.set(new Date(schedule.overdueAt.getTime() + MINUTE_MS_FOR_TEST));
    expect(Date.parse(acme.not_after) - t.clock.now().getTime()).toBeGreaterThan(30 * DAY_MS);
    const overdue = await tick();
    expect(overdue['expiry-alerts'].opened).toBe(1);
    expect(await expiringAlerts('acme')).toMatchObject([{ status: 'OPEN', severity: 3 }]);
    expect(await expiringAlerts('plain')).toEqual([]); // its 365-day certificate's window has not begun

    // The device renews: its advice is cleared and the alert closes.
    const rotated = await t.call('acme', 'POST', '/customer/devices/meter/certificates/rotate', { key_type: 'ec-p256' });
    expect(rotated.status, rotated.body).toBe(201);
    const after = await tick();
    expect(after['renewal-advice'].cleared).toBe(1);
    expect(published.at(-1)).toEqual({ cn: 'acme/meter', payload: null });
    expect((await expiringAlerts('acme')).map((a) => a.status)).toEqual(['CLOSED']);
  });
  // Issue 21 item 2: the early alert held only for tenants that saved a renewal policy; a tenant on
  // the default policy (365 days, window 1/3, jitter 0.25) got the usual 30-day warning only.
  it('a tenant on the default policy gets the early alert too when half the window is gone', async () => {
    expect((await t.call('dflt', 'POST', '/customer/devices', { device_id: 'meter' })).status).toBe(201);
    const cert = (await t.call('dflt', 'POST', '/customer/devices/meter/certificates/generate', { key_type: 'ec-p256' })).json.certificate;
    expect((await t.call('dflt', 'GET', '/customer/renewal-policy')).json).toMatchObject({ validity_days: 365, renewal_window: DEFAULT_RENEWAL_POLICY.renewal_window });
    const schedule = renewalSchedule(cert, DEFAULT_RENEWAL_POLICY);
    t.clock.set(new Date(schedule.overdueAt.getTime() + MINUTE_MS_FOR_TEST));
    expect(Date.parse(cert.not_after) - t.clock.now().getTime()).toBeGreaterThan(30 * DAY_MS);
    const counts = await tick();
    expect(counts['renewal-advice'].scheduled).toBeGreaterThanOrEqual(1);
    expect(await expiringAlerts('dflt')).toMatchObject([{ status: 'OPEN', severity: 3, details: { certificate_id: cert.id } }]);
  });
});
