import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DAY_MS } from '../src/domain/clock.ts';
import { createWorker, type Worker } from '../src/composition/worker.ts';
import { DEFAULT_RETRY_POLICY } from '../src/domain/notification-policy.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { captureLogger } from './support/capture-logger.ts';

/**
 * System conditions become operator alerts (tenant __system__) and reach the operators'
 * webhooks with the tenants' signing and retry; they close themselves when the condition
 * clears. The broker reload really fails: BROKER_RELOAD_COMMAND is a shell command that
 * fails while a file exists.
 */
describe.each(DRIVERS)('system alerts to operator webhooks on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let receiver: WebhookReceiver;
  let worker: Worker;
  let dir: string;
  const brokerDown = () => join(dir, 'broker-down');

  const system = async () =>
    (await database.db.asOperator((tx) => tx.query<Record<string, any>>(`SELECT * FROM fleet_alert WHERE tenant_id = '__system__' ORDER BY id`))).rows;
  const run = async () => Object.fromEntries((await worker.runOnce()).map((r) => [r.task, r]));

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    dir = mkdtempSync(join(tmpdir(), 'certfleet-sysalerts-'));
    t = await startTestService(database, {
      env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', BROKER_RELOAD_COMMAND: `test ! -e ${brokerDown()}` },
    });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await worker?.close();
    await receiver?.close();
    await t?.close();
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await worker?.close();
    await database.reset();
    receiver.clear();
    if (existsSync(brokerDown())) rmSync(brokerDown());
    t.clock.set(new Date(Math.floor(Date.now() / 1000) * 1000));
    worker = await createWorker(t.config, {
      clock: t.clock,
      storage: database.storage,
      crl: t.service.crl.publisher,
      ca: t.service.ca.ca,
      revocations: t.service.crl.listener,
      logger: captureLogger([]),
      holder: 'sys-worker',
    });
  });

  it('operator webhooks are the operators own: customers cannot reach them, and they list no tenant endpoint', async () => {
    const op = await t.call(null, 'POST', '/operator/notification-webhooks', { url: receiver.url('/ops') });
    expect(op.status, op.body).toBe(201);
    expect(op.json.webhook.tenant_id).toBe('__system__');
    expect((await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/acme') })).status).toBe(201);
    expect((await t.call('acme', 'GET', '/operator/notification-webhooks')).status).toBe(403);
    expect((await t.call('acme', 'POST', '/api/v1/operator/notification-webhooks', { url: receiver.url('/evil') })).status).toBe(403);
    expect((await t.call('acme', 'GET', `/customer/notification-webhooks/${op.json.webhook.id}`)).status).toBe(404);
    expect((await t.call(null, 'GET', '/api/v1/operator/notification-webhooks')).json.webhooks.map((w: { url: string }) => w.url)).toEqual([receiver.url('/ops')]);
    expect((await t.call(null, 'DELETE', `/operator/notification-webhooks/${op.json.webhook.id}`)).status).toBe(204);
  });

  it('BROKER_RELOAD_FAILING opens while the broker does not reload, reaches the operator webhook signed (retried after a failure), never a tenant, and closes itself', async () => {
    const op = (await t.call(null, 'POST', '/operator/notification-webhooks', { url: receiver.url('/ops') })).json;
    const tenantHook = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/acme') })).json;
    expect(tenantHook.webhook.id).toBeGreaterThan(0);
    receiver.respond('/ops', 500); // first attempt fails: retried like a tenant's delivery

    writeFileSync(brokerDown(), '');
    const first = await run();
    expect(first.crl.status).toBe('ok'); // the CRL is stored and written; only the reload failed
    expect(first['crl-freshness'].counts).toMatchObject({ system: { broker_reload: 'opened' } });
    const [alert] = await system();
    expect(alert).toMatchObject({ alert_type: 'BROKER_RELOAD_FAILING', severity: 4, status: 'OPEN', device_id: null });
    expect((await t.call(null, 'GET', '/operator/alerts?type=BROKER_RELOAD_FAILING')).json.alerts).toHaveLength(1);
    expect((await t.call('acme', 'GET', '/customer/alerts')).json.total).toBe(0);

    expect(receiver.received('/ops')).toHaveLength(1);
    receiver.respond('/ops', 200);
    t.clock.advance(DEFAULT_RETRY_POLICY.baseDelayMs * 2);
    await run();
    const opened = receiver.verified('/ops', op.secret);
    expect(opened.map((d) => [d.body.event, d.body.attempt, d.body.alert.alert_type])).toEqual([
      ['alert.opened', 1, 'BROKER_RELOAD_FAILING'],
      ['alert.opened', 2, 'BROKER_RELOAD_FAILING'],
    ]);
    expect(receiver.verified('/ops', tenantHook.secret)).toEqual([]); // signed with the operator endpoint's own secret
    expect(receiver.received('/acme')).toEqual([]);

    rmSync(brokerDown());
    await run(); // publishes again: the reload succeeds
    expect(await system()).toMatchObject([{ alert_type: 'BROKER_RELOAD_FAILING', status: 'CLOSED', close_reason: 'resolved' }]);
    await run();
    expect(receiver.verified('/ops', op.secret).map((d) => d.body.event)).toContain('alert.closed');
    expect(receiver.received('/acme')).toEqual([]);
  });

  it('CA_EXPIRING: MEDIUM within 180 days, HIGH within 60, CRITICAL within 30 (no next CA can be staged yet), delivered to the operators, closed when the CA is no longer near expiry', async () => {
    const op = (await t.call(null, 'POST', '/operator/notification-webhooks', { url: receiver.url('/ops') })).json;
    const notAfter = t.service.ca.ca!.certificate.notAfter.getTime();
    const now = t.clock.now();
    t.clock.set(new Date(notAfter - 120 * DAY_MS));
    expect((await run())['crl-freshness'].counts?.system).toMatchObject({ [`ca:${t.service.ca.ca!.subjectKeyId.toString('hex')}`]: 'opened' });
    expect(await system()).toMatchObject([{ alert_type: 'CA_EXPIRING', severity: 3, status: 'OPEN' }]);
    t.clock.set(new Date(notAfter - 45 * DAY_MS));
    await run();
    expect((await system()).map((a) => [a.alert_type, a.severity, a.status])).toEqual([['CA_EXPIRING', 4, 'OPEN']]);
    t.clock.set(new Date(notAfter - 20 * DAY_MS));
    await run();
    expect((await system()).map((a) => [a.alert_type, a.severity, a.status])).toEqual([['CA_EXPIRING', 5, 'OPEN']]);
    t.clock.set(now); // a new CA far from expiry: the condition clears
    await run();
    expect((await system()).map((a) => a.status)).toEqual(['CLOSED']);
    await run();
    expect(receiver.verified('/ops', op.secret).map((d) => [d.body.event, d.body.alert.severity])).toEqual([
      ['alert.opened', 3],
      ['alert.escalated', 4],
      ['alert.escalated', 5],
      ['alert.closed', 5],
    ]);
  });
});
