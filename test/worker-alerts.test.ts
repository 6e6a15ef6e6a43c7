import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS } from '../src/domain/clock.ts';
import { createWorker, type Worker, type WorkerOverrides } from '../src/composition/worker.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { captureLogger } from './support/capture-logger.ts';
import { scaled } from './support/timeouts.ts';

const DEVICE = 'DEVICE-001';

describe.each(oneDriver('pg'))('worker: expiry alerts, scheduled revocations and webhooks on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let receiver: WebhookReceiver;
  let worker: Worker;
  let logs: Record<string, unknown>[];

  const newWorker = (overrides: WorkerOverrides = {}) =>
    createWorker(t.config, {
      clock: t.clock,
      storage: database.storage,
      metrics: t.service.metrics,
      // as under `serve`: the service's CRL publisher
      crl: t.service.crl.publisher,
      revocations: t.service.crl.listener,
      logger: captureLogger(logs),
      holder: 'test-worker',
      ...overrides,
      delivery: { random: () => 0, ...overrides.delivery }, // retry delays without jitter: exact times below
    });

  /** One full tick: every task once. */
  const tick = async () => {
    const reports = await worker.runOnce();
    expect(reports.filter((r) => r.status !== 'ok'), JSON.stringify(reports)).toEqual([]);
    return Object.fromEntries(reports.map((r) => [r.task, r.counts]));
  };

  const issue = async (validityDays: number, device = DEVICE, tenant = 'acme') => {
    const res = await t.call(tenant, 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: validityDays });
    expect(res.status, res.body).toBe(201);
    return res.json.certificate as { id: number; fingerprint_sha256: string; not_after: string };
  };

  const alerts = async (where = 'true') =>
    (await database.db.asOperator((tx) => tx.query<Record<string, any>>(`SELECT * FROM fleet_alert WHERE ${where} ORDER BY id`))).rows;

  /** Everything a tick may write, except the lease rows (they record each run by design). */
  const snapshot = async () =>
    database.db.asOperator(async (tx) => {
      const out: Record<string, unknown> = {};
      for (const table of ['fleet_alert', 'notification_outbox', 'device_certificates', 'certificate_rotations', 'audit_events']) {
        out[table] = (await tx.query(`SELECT row_to_json(x)::text AS j FROM ${table} x ORDER BY id`)).rows.map((r) => r.j);
      }
      return out;
    });

  const advanceTo = (notAfter: string, msBefore: number) => t.clock.set(new Date(Date.parse(notAfter) - msBefore));

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    // the receiver listens on 127.0.0.1, a loopback target the default configuration refuses
    t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' } });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await worker?.close();
    await receiver?.close();
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await worker?.close();
    await database.reset();
    receiver.clear();
    logs = [];
    t.clock.set(new Date(Math.floor(Date.now() / 1000) * 1000)); // whole seconds, like not_after in a certificate
    worker = await newWorker();
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: DEVICE })).status).toBe(201);
  });

  it('raises one MEDIUM alert per certificate within 30 days, with the seed details; a second tick changes nothing', async () => {
    await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' });
    await issue(40); // outside the window: no alert
    const other = await issue(20, 'DEVICE-002');
    const counts = await tick();
    expect(counts['expiry-alerts']).toMatchObject({ opened: 1, escalated: 0, closed: 0 });
    const rows = await alerts();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ tenant_id: 'acme', device_id: 'DEVICE-002', alert_type: 'CERT_EXPIRING', fingerprint: other.fingerprint_sha256, status: 'OPEN', severity: 3 });
    expect(rows[0].details).toEqual({
      fingerprint: other.fingerprint_sha256,
      certificate_id: other.id,
      common_name: 'acme/DEVICE-002',
      expires_at: other.not_after,
      days_remaining: 20,
    });
    expect(rows[0].summary).toBe('Certificate of device DEVICE-002 expires in 20 days');

    const before = await snapshot();
    const again = await tick();
    expect(again['expiry-alerts']).toMatchObject({ opened: 0, escalated: 0, closed: 0 });
    expect(again['mark-expired']).toMatchObject({ expired: 0 });
    expect(await snapshot()).toEqual(before);
    // each run logged one JSON line per task, with its duration and counts
    const line = logs.find((l) => l.task === 'expiry-alerts');
    expect(line).toMatchObject({ msg: 'worker task', status: 'ok', counts: { opened: 1 } });
    expect(typeof line!.duration_ms).toBe('number');
  });

  it('escalates one alert 30 → 7 → 1 days (MEDIUM, HIGH, CRITICAL); an escalation opens an acknowledged alert again', async () => {
    const cert = await issue(40);
    await tick();
    expect(await alerts()).toHaveLength(0);

    advanceTo(cert.not_after, 29 * DAY_MS);
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 1 });
    const [opened] = await alerts();
    expect(opened).toMatchObject({ severity: 3, status: 'OPEN' });
    expect((await t.call('acme', 'POST', `/customer/alerts/${opened.id}/acknowledge`)).json.alert.status).toBe('ACKNOWLEDGED');

    advanceTo(cert.not_after, 7 * DAY_MS + HOUR_MS); // 7 days and 1 hour left: still MEDIUM
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 0, escalated: 0 });
    advanceTo(cert.not_after, 7 * DAY_MS); // exactly 7 days: HIGH
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 0, escalated: 1 });
    let [alert] = await alerts();
    expect(alert).toMatchObject({ id: opened.id, severity: 4, status: 'OPEN', acknowledged_at: null });
    expect(alert.details.days_remaining).toBe(7);

    advanceTo(cert.not_after, DAY_MS - 60_000);
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 0, escalated: 1 });
    expect(await tick()).toMatchObject({ 'expiry-alerts': { opened: 0, escalated: 0 } });
    const rows = await alerts();
    expect(rows).toHaveLength(1);
    [alert] = rows;
    expect(alert).toMatchObject({ id: opened.id, severity: 5, status: 'OPEN' });
    expect(alert.details.days_remaining).toBe(0);
    expect(alert.summary).toMatch(/ expires in 24 hours$/); // 23 h 59 min left: never "in 0 day(s)"
  });

  it('closes the alert by itself on rotation (and never reopens it for the superseded certificate)', async () => {
    const old = await issue(20);
    await tick();
    expect(await alerts("status <> 'CLOSED'")).toHaveLength(1);
    const rotated = await t.call('acme', 'POST', `/customer/devices/${DEVICE}/certificates/rotate`, { key_type: 'ec-p256', validity_days: 365, revoke_old_after_hours: 24 });
    expect(rotated.status).toBe(201);
    expect((await tick())['expiry-alerts']).toMatchObject({ closed: 1, closed_by_reason: { rotated: 1 }, opened: 0 });
    const [alert] = await alerts();
    expect(alert).toMatchObject({ status: 'CLOSED', close_reason: 'rotated', closed_by: 'system:expiry-alerts', fingerprint: old.fingerprint_sha256 });
    t.clock.advance(25 * HOUR_MS);
    const counts = await tick();
    expect(counts['scheduled-revocations']).toMatchObject({ revoked: 1 });
    expect(await alerts()).toHaveLength(1); // no new alert, no CERT_EXPIRED (the device has its new certificate)
  });

  it('closes the alert by itself on revocation', async () => {
    const cert = await issue(10);
    await tick();
    expect((await t.call('acme', 'POST', `/customer/certificates/${cert.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    expect((await tick())['expiry-alerts']).toMatchObject({ closed: 1, closed_by_reason: { revoked: 1 } });
    expect(await alerts()).toMatchObject([{ status: 'CLOSED', close_reason: 'revoked' }]);
    expect((await tick())['expiry-alerts']).toMatchObject({ closed: 0, opened: 0 });
  });

  it('marks an expired certificate EXPIRED, closes its expiry alert and raises CERT_EXPIRED once for the device; a new certificate closes that', async () => {
    const cert = await issue(5);
    await tick();
    expect(await alerts()).toMatchObject([{ alert_type: 'CERT_EXPIRING', severity: 4 }]);
    advanceTo(cert.not_after, -HOUR_MS);
    const counts = await tick();
    expect(counts['mark-expired']).toEqual({ expired: 1, devicesWithoutCertificate: 1 });
    expect(counts['expiry-alerts']).toMatchObject({ closed: 1, closed_by_reason: { expired: 1 } });
    const status = await database.db.asOperator((tx) => tx.query<{ status: string }>('SELECT status FROM device_certificates WHERE id = $1', [cert.id]));
    expect(status.rows[0].status).toBe('EXPIRED');
    const rows = await alerts();
    expect(rows).toMatchObject([
      { alert_type: 'CERT_EXPIRING', status: 'CLOSED', close_reason: 'expired' },
      { alert_type: 'CERT_EXPIRED', status: 'OPEN', severity: 5, device_id: DEVICE, fingerprint: `device:${DEVICE}` },
    ]);
    expect(rows[1].details).toMatchObject({ fingerprint: cert.fingerprint_sha256, certificate_id: cert.id, expires_at: cert.not_after });
    const audit = await database.db.asOperator((tx) => tx.query(`SELECT * FROM audit_events WHERE action = 'certificate.expired'`));
    expect(audit.rows).toHaveLength(1);

    const before = await snapshot();
    await tick();
    expect(await snapshot()).toEqual(before);

    await issue(365);
    expect((await tick())['expiry-alerts']).toMatchObject({ closed: 1, closed_by_reason: { replaced: 1 } });
    expect((await alerts())[1]).toMatchObject({ alert_type: 'CERT_EXPIRED', status: 'CLOSED', close_reason: 'replaced' });
  });

  it("raises CERT_EXPIRED only when a device's last ACTIVE certificate expires", async () => {
    const first = await issue(10);
    const second = await issue(20);
    await tick();
    expect((await alerts()).map((a) => a.fingerprint).sort()).toEqual([first.fingerprint_sha256, second.fingerprint_sha256].sort());
    advanceTo(first.not_after, -60_000);
    expect((await tick())['mark-expired']).toEqual({ expired: 1, devicesWithoutCertificate: 0 });
    expect(await alerts("alert_type = 'CERT_EXPIRED'")).toHaveLength(0);
    advanceTo(second.not_after, -60_000);
    expect((await tick())['mark-expired']).toEqual({ expired: 1, devicesWithoutCertificate: 1 });
    expect(await alerts("alert_type = 'CERT_EXPIRED'")).toMatchObject([{ status: 'OPEN', details: { certificate_id: second.id } }]);
    // a missed run is caught up and a doubled one adds nothing
    t.clock.advance(30 * DAY_MS);
    await tick();
    await tick();
    expect(await alerts("alert_type = 'CERT_EXPIRED'")).toHaveLength(1);
  });

  it('a missed run loses nothing: after a long pause the alert opens at the severity due now', async () => {
    const cert = await issue(60);
    advanceTo(cert.not_after, 12 * HOUR_MS); // the worker never ran while the certificate crossed 30 and 7 days
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 1, escalated: 0 });
    expect(await alerts()).toMatchObject([{ severity: 5, status: 'OPEN' }]);
  });

  it('a closed-by-hand alert stays closed until its certificate reaches the next threshold', async () => {
    const cert = await issue(20);
    await tick();
    const [alert] = await alerts();
    const closed = await t.call('acme', 'POST', `/customer/alerts/${alert.id}/close`);
    expect(closed.status).toBe(200);
    expect(closed.json.alert).toMatchObject({ status: 'CLOSED', close_reason: 'manual', closed_by: 'test:acme:customer' });
    t.clock.advance(DAY_MS);
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 0 });
    advanceTo(cert.not_after, 7 * DAY_MS);
    expect((await tick())['expiry-alerts']).toMatchObject({ opened: 1 });
    expect((await alerts()).map((a) => [a.status, a.severity])).toEqual([['CLOSED', 3], ['OPEN', 4]]);
  });

  it('applies a due scheduled revocation exactly once', async () => {
    const old = await issue(365);
    await t.call('acme', 'POST', `/customer/devices/${DEVICE}/certificates/rotate`, { key_type: 'ec-p256', revoke_old_after_hours: 1 });
    await tick();
    const status = async () => (await database.db.asOperator((tx) => tx.query<{ status: string; revoked_at: Date }>('SELECT status, revoked_at FROM device_certificates WHERE id = $1', [old.id]))).rows[0];
    expect((await status()).status).toBe('ACTIVE');
    t.clock.advance(2 * HOUR_MS);
    expect((await tick())['scheduled-revocations']).toMatchObject({ revoked: 1 });
    const revokedAt = (await status()).revoked_at;
    t.clock.advance(HOUR_MS);
    expect((await tick())['scheduled-revocations']).toMatchObject({ revoked: 0 });
    expect(await status()).toMatchObject({ status: 'REVOKED', revoked_at: revokedAt });
    const audit = await database.db.asOperator((tx) => tx.query(`SELECT 1 FROM audit_events WHERE action = 'certificate.revoked' AND target_id = $1`, [String(old.id)]));
    expect(audit.rows).toHaveLength(1);
  });

  it('alerts API: filters, acknowledge, close, tenant isolation and the operator view', async () => {
    await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' });
    await issue(20);
    await issue(3, 'DEVICE-002');
    await t.call('globex', 'POST', '/customer/devices', { device_id: 'G-1' });
    await issue(10, 'G-1', 'globex');
    await tick();

    const all = await t.call('acme', 'GET', '/customer/alerts?type=CERT_EXPIRING&status=OPEN');
    expect(all.status).toBe(200);
    expect(all.json).toMatchObject({ total: 2, limit: 100, next_cursor: null });
    const listed = all.json.alerts as Array<{ id: number; device_id: string }>;
    expect(listed.map((a) => a.id)).toEqual(listed.map((a) => a.id).sort((a, b) => b - a)); // newest first
    expect(listed.map((a) => a.device_id).sort()).toEqual([DEVICE, 'DEVICE-002']);
    expect(listed.find((a) => a.device_id === 'DEVICE-002')).toMatchObject({ tenant_id: 'acme', severity: 4, details: { days_remaining: 3 } });
    expect((await t.call('acme', 'GET', '/customer/alerts?severity=3')).json.alerts.map((a: { device_id: string }) => a.device_id)).toEqual([DEVICE]);
    expect((await t.call('acme', 'GET', '/customer/alerts?min_severity=4')).json.total).toBe(1);
    expect((await t.call('acme', 'GET', '/api/v1/customer/alerts?device_id=DEVICE-002')).json.total).toBe(1);
    const page = await t.call('acme', 'GET', '/customer/alerts?limit=1');
    expect(page.json.alerts[0].id).toBe(listed[0].id);
    expect(page.json.next_cursor).not.toBeNull();
    const next = await t.call('acme', 'GET', `/customer/alerts?limit=1&cursor=${page.json.next_cursor}`);
    expect(next.json).toMatchObject({ alerts: [{ id: listed[1].id }], next_cursor: null });

    const id = listed[0].id;
    const ack = await t.call('acme', 'POST', `/customer/alerts/${id}/acknowledge`);
    expect(ack.json.alert).toMatchObject({ status: 'ACKNOWLEDGED', acknowledged_by: 'test:acme:customer' });
    expect((await t.call('acme', 'POST', `/customer/alerts/${id}/acknowledge`)).status).toBe(200);
    expect((await t.call('acme', 'GET', '/customer/alerts?status=ACKNOWLEDGED')).json.total).toBe(1);
    // What needs attention (the console's default): an acknowledged alert stays in it.
    expect((await t.call('acme', 'GET', '/customer/alerts?unresolved=true')).json.alerts.map((a: { id: number }) => a.id)).toContain(id);
    expect((await t.call('acme', 'POST', `/customer/alerts/${id}/close`)).json.alert.status).toBe('CLOSED');
    const again = await t.call('acme', 'POST', `/customer/alerts/${id}/acknowledge`);
    expect(again.status).toBe(409);
    expect(again.json.code).toBe('ALERT_CLOSED');

    // another tenant's alert is 404, never 403, and not in its list
    const globexId = (await t.call('globex', 'GET', '/customer/alerts')).json.alerts[0].id;
    for (const [method, path] of [['GET', ''], ['POST', '/acknowledge'], ['POST', '/close']]) {
      const res = await t.call('acme', method, `/customer/alerts/${globexId}${path}`);
      expect(res.status).toBe(404);
      expect(res.json.code).toBe('ALERT_NOT_FOUND');
    }
    expect((await t.call('globex', 'GET', `/customer/alerts/${globexId}`)).json.alert.status).toBe('OPEN');
    expect((await t.call('acme', 'GET', '/customer/alerts?tenant_id=globex')).status).toBe(422);
    expect((await t.call('acme', 'GET', '/customer/alerts?status=open')).status).toBe(422);
    expect((await t.call('acme', 'GET', '/customer/alerts?severity=high')).status).toBe(422);

    // operators see every tenant and can act on any alert
    const operator = await t.call(null, 'GET', '/operator/alerts?status=OPEN');
    expect(operator.json.alerts.map((a: { tenant_id: string }) => a.tenant_id).sort()).toEqual(['acme', 'globex']);
    expect((await t.call(null, 'GET', '/api/v1/operator/alerts?tenant_id=globex')).json.total).toBe(1);
    expect((await t.call(null, 'POST', `/operator/alerts/${globexId}/acknowledge`)).json.alert.acknowledged_by).toBe('test:null:operator');
    expect((await t.call('acme', 'GET', '/operator/alerts')).status).toBe(403);
  });

  it('webhook endpoints: CRUD, the secret shown once and unreadable by the tenant role, http(s) only, tenant isolation', async () => {
    const created = await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/hook'), description: 'ops' });
    expect(created.status).toBe(201);
    expect(created.json.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.json.warning).toMatch(/not be shown again/i);
    const { webhook } = created.json;
    expect(webhook).toMatchObject({ tenant_id: 'acme', url: receiver.url('/hook'), description: 'ops', enabled: true });
    expect(JSON.stringify(webhook)).not.toContain(created.json.secret);

    const listed = await t.call('acme', 'GET', '/customer/notification-webhooks');
    expect(listed.json.webhooks).toHaveLength(1);
    expect(listed.body).not.toContain(created.json.secret);
    expect((await t.call('acme', 'GET', `/customer/notification-webhooks/${webhook.id}`)).body).not.toContain('whsec_');
    const patched = await t.call('acme', 'PATCH', `/customer/notification-webhooks/${webhook.id}`, { enabled: false, description: null });
    expect(patched.json.webhook).toMatchObject({ enabled: false, description: null });
    const rotated = await t.call('acme', 'POST', `/customer/notification-webhooks/${webhook.id}/rotate-secret`);
    expect(rotated.json.secret).toMatch(/^whsec_/);
    expect(rotated.json.secret).not.toBe(created.json.secret);

    // the tenant role cannot read the secret column at all; the operator role (the worker) can, encrypted
    await expect(database.db.asTenant('acme', (tx) => tx.query('SELECT secret FROM notification_webhooks'))).rejects.toThrow(/permission denied/);
    const stored = await database.db.asOperator((tx) => tx.query<{ secret: string }>('SELECT secret FROM notification_webhooks'));
    expect(stored.rows[0].secret).toMatch(/^v2:[\w-]{8}:[\w-]{16}:[\w-]{22}:[\w-]+$/); // bound to its tenant and webhook
    expect(stored.rows[0].secret).not.toContain(rotated.json.secret.slice(6));

    for (const url of ['ftp://example.com/x', 'not a url', 'https://user:pw@example.com/', 'file:///etc/passwd']) {
      const bad = await t.call('acme', 'POST', '/customer/notification-webhooks', { url });
      expect(bad.status, url).toBe(422);
      expect(bad.json.code).toBe('VALIDATION_FAILED');
    }
    expect((await t.call('acme', 'POST', '/customer/notification-webhooks', { url: 'https://x.test', extra: 1 })).status).toBe(422);
    expect((await t.call('acme', 'PATCH', `/customer/notification-webhooks/${webhook.id}`, {})).status).toBe(422);

    for (const [method, path, body] of [
      ['GET', '', undefined],
      ['PATCH', '', { enabled: true }],
      ['DELETE', '', undefined],
      ['POST', '/rotate-secret', undefined],
      ['GET', '/deliveries', undefined],
    ] as const) {
      const res = await t.call('globex', method, `/customer/notification-webhooks/${webhook.id}${path}`, body);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.json.code).toBe('WEBHOOK_NOT_FOUND');
    }
    expect((await t.call('globex', 'GET', '/customer/notification-webhooks')).json.webhooks).toEqual([]);
    expect((await t.call('acme', 'DELETE', `/customer/notification-webhooks/${webhook.id}`)).status).toBe(204);
    expect((await t.call('acme', 'GET', `/customer/notification-webhooks/${webhook.id}`)).status).toBe(404);
  });

  it('delivers signed alert.opened, alert.escalated and alert.closed events; a failing endpoint is retried with backoff and blocks nobody', async () => {
    const good = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/good') })).json;
    const bad = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/bad') })).json;
    await t.call('globex', 'POST', '/customer/notification-webhooks', { url: receiver.url('/globex') });
    receiver.respond('/bad', 500);
    const cert = await issue(10);
    await tick();

    const [opened] = receiver.verified('/good', good.secret);
    expect(opened).toBeDefined();
    expect(receiver.received('/good')).toHaveLength(1);
    expect(opened.headers['x-certfleet-event']).toBe('alert.opened');
    expect(opened.headers['content-type']).toBe('application/json');
    expect(opened.headers['x-certfleet-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(opened.body).toMatchObject({
      event: 'alert.opened',
      delivery_id: opened.headers['x-certfleet-delivery'],
      occurred_at: t.clock.now().toISOString(),
      alert: { alert_type: 'CERT_EXPIRING', tenant_id: 'acme', device_id: DEVICE, severity: 3, status: 'OPEN', details: { fingerprint: cert.fingerprint_sha256, days_remaining: 10 } },
    });
    expect(receiver.verified('/good', bad.secret)).toHaveLength(0); // signed with its own secret only
    expect(receiver.received('/globex')).toHaveLength(0); // another tenant's endpoint hears nothing

    // the failing endpoint: attempt 1 failed, next one 30 s later, then 60 s
    const deliveries = async () => (await t.call('acme', 'GET', `/customer/notification-webhooks/${bad.webhook.id}/deliveries`)).json.deliveries;
    let [d] = await deliveries();
    expect(d).toMatchObject({ event: 'alert.opened', status: 'PENDING', attempts: 1, last_status_code: 500, last_error: 'HTTP 500' });
    expect(Date.parse(d.next_attempt_at) - t.clock.now().getTime()).toBe(30_000);
    t.clock.advance(29_000);
    await tick();
    expect(receiver.received('/bad')).toHaveLength(1);
    t.clock.advance(1_000);
    await tick();
    [d] = await deliveries();
    expect(d).toMatchObject({ attempts: 2, status: 'PENDING' });
    expect(Date.parse(d.next_attempt_at) - t.clock.now().getTime()).toBe(60_000);

    // it recovers: the next attempt is delivered, and verified with the endpoint's secret
    receiver.respond('/bad', 204);
    t.clock.advance(60_000);
    await tick();
    [d] = await deliveries();
    expect(d).toMatchObject({ status: 'DELIVERED', attempts: 3, last_error: null, delivered_at: t.clock.now().toISOString() });
    expect(receiver.verified('/bad', bad.secret)).toHaveLength(3);
    expect(receiver.received('/good')).toHaveLength(1); // delivered once, never again

    // escalation and closing are events too
    advanceTo(cert.not_after, 7 * DAY_MS);
    await tick();
    await t.call('acme', 'POST', `/customer/certificates/${cert.id}/revoke`);
    await tick();
    expect(receiver.verified('/good', good.secret).map((r) => [r.body.event, r.body.alert.severity, r.body.alert.status])).toEqual([
      ['alert.opened', 3, 'OPEN'],
      ['alert.escalated', 4, 'OPEN'],
      ['alert.closed', 4, 'CLOSED'],
    ]);
    const ids = receiver.received('/good').map((r) => r.headers['x-certfleet-delivery']);
    expect(new Set(ids).size).toBe(3);
  });

  it('gives up after the last attempt (DEAD), and a hanging endpoint times out without holding back the others', async () => {
    await worker.close();
    // The time-out bounds every request, /good's too: scaled, so a busy machine does not time it out.
    worker = await newWorker({ delivery: { timeoutMs: scaled(1_000), retry: { baseDelayMs: 1_000, maxDelayMs: 4_000, maxAttempts: 3 } } });
    const good = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/good') })).json;
    const hang = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/hang') })).json;
    receiver.respond('/hang', 'hang');
    await issue(10);
    await tick(); // ends although /hang never answers: its request timed out (last_error below)
    expect(receiver.verified('/good', good.secret)).toHaveLength(1);
    const state = async () => (await t.call('acme', 'GET', `/customer/notification-webhooks/${hang.webhook.id}/deliveries`)).json.deliveries[0];
    expect((await state()).last_error).toMatch(/timeout|abort/i);
    for (const wait of [1_000, 2_000]) {
      t.clock.advance(wait);
      await tick();
    }
    expect(await state()).toMatchObject({ status: 'DEAD', attempts: 3, next_attempt_at: null });
    t.clock.advance(DAY_MS);
    await tick();
    expect(receiver.received('/hang')).toHaveLength(3);
  });

  it('queued deliveries survive a restart of the worker', async () => {
    const hook = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/later') })).json;
    receiver.respond('/later', 503);
    await issue(10);
    await tick();
    expect(receiver.received('/later')).toHaveLength(1);
    await worker.close();
    receiver.respond('/later', 200);
    worker = await newWorker({ holder: 'test-worker-2' });
    t.clock.advance(30_000);
    await tick();
    expect(receiver.verified('/later', hook.secret).map((r) => r.body.attempt)).toEqual([1, 2]);
  });

  it('raises CRL_STALE (a system alert for operators) when publication keeps failing or nextUpdate is near, and closes it when fresh', async () => {
    let failing = true;
    const crl = { publishNow: async () => (failing ? Promise.reject(new Error('disk full')) : { published: true, crlNumber: 7n }), status: () => ({ consecutiveFailures: 0 }) };
    await worker.close();
    worker = await newWorker({ crl });
    const run = async () => Object.fromEntries((await worker.runOnce()).map((r) => [r.task, r]));
    const stale = () => alerts("alert_type = 'CRL_STALE'");
    for (let i = 1; i <= 3; i++) {
      const reports = await run();
      expect(reports.crl).toMatchObject({ status: 'failed', error: 'disk full' });
      expect(reports['mark-expired'].status).toBe('ok'); // one failing task never stops the others
      expect(await stale()).toHaveLength(i < 3 ? 0 : 1);
    }
    expect((await stale())[0]).toMatchObject({ tenant_id: '__system__', device_id: null, fingerprint: 'device-crl', severity: 4, status: 'OPEN', details: { consecutive_failures: 3 } });
    expect((await t.call('acme', 'GET', '/customer/alerts?type=CRL_STALE')).json.total).toBe(0);
    expect((await t.call(null, 'GET', '/operator/alerts?tenant_id=__system__')).json.alerts).toMatchObject([{ alert_type: 'CRL_STALE', severity: 4 }]);

    failing = false;
    expect((await run()).crl).toMatchObject({ status: 'ok', counts: { published: true, crlNumber: '7' } });
    expect(await stale()).toMatchObject([{ status: 'CLOSED', close_reason: 'resolved' }]);

    // a stored CRL whose nextUpdate comes within 24 h: HIGH; once it passed: CRITICAL (the broker rejects every device)
    const nextUpdate = new Date(t.clock.now().getTime() + 12 * HOUR_MS);
    await database.driver.transaction((tx) => tx.query(`INSERT INTO crl_state (issuer_key_id, crl_number, next_update) VALUES ('ca', 7, $1)`, [nextUpdate]));
    await run();
    expect((await stale()).map((a) => [a.status, a.severity])).toEqual([['CLOSED', 4], ['OPEN', 4]]);
    t.clock.advance(13 * HOUR_MS);
    await run();
    expect((await stale()).map((a) => [a.status, a.severity])).toEqual([['CLOSED', 4], ['OPEN', 5]]);
    await run();
    expect(await stale()).toHaveLength(2);
    await database.driver.transaction((tx) => tx.query(`UPDATE crl_state SET next_update = $1`, [new Date(t.clock.now().getTime() + 7 * DAY_MS)]));
    await run();
    expect((await stale()).map((a) => a.status)).toEqual(['CLOSED', 'CLOSED']);
  });

  it('exposes fleet and worker metrics on /metrics', async () => {
    await issue(3);
    await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-002' });
    const revoked = await issue(100, 'DEVICE-002');
    await t.call('acme', 'POST', `/customer/certificates/${revoked.id}/revoke`);
    await tick();
    const res = await t.service.app.inject({ method: 'GET', url: '/metrics' });
    const text = res.body;
    expect(text).toMatch(/^certfleet_certificates\{status="ACTIVE"\} 1$/m);
    expect(text).toMatch(/^certfleet_certificates\{status="REVOKED"\} 1$/m);
    expect(text).toMatch(/^certfleet_certificates\{status="EXPIRED"\} 0$/m);
    expect(text).toMatch(/^certfleet_certificates_expiring\{within_days="7"\} 1$/m);
    expect(text).toMatch(/^certfleet_certificates_expiring\{within_days="1"\} 0$/m);
    // fleet-wide by default: tenant ids only with METRICS_TENANT_LABELS=true (test/exposure.test.ts)
    expect(text).toMatch(/^certfleet_certificate_soonest_expiry_timestamp_seconds \d+/m);
    expect(text).not.toContain('tenant="acme"');
    expect(text).toMatch(/^certfleet_alerts_open\{severity="4"\} 1$/m);
    expect(text).toMatch(/^certfleet_alerts_open\{severity="5"\} 0$/m);
    expect(text).toMatch(/^certfleet_worker_task_duration_seconds_count\{task="expiry-alerts"\} [1-9]/m);
    expect(text).toMatch(/^certfleet_worker_task_failures_total\{task="\S+"\} \d+$/m);
  });
});
