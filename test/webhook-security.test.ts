import { randomBytes } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createWorker, type Worker } from '../src/composition/worker.ts';
import { loadOrCreateSecretKeyFile, loadWebhookSecrets } from '../src/composition/webhook-secrets.ts';
import { loadConfig } from '../src/config.ts';
import { isNonPublicAddress } from '../src/domain/network-policy.ts';
import { createSecretBox, isSealed, parseSecretKey } from '../src/pki/secret-box.ts';
import { createHttpWebhookSender, guardedLookup } from '../src/webhooks/webhook-sender.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, testConfig, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { silentLogger } from '../src/support/logger.ts';

describe('webhook secret encryption (secret box, key file)', () => {
  it('seals with AES-256-GCM and a fresh IV each time; opens only with the same key; passes legacy plaintext through', () => {
    const box = createSecretBox(randomBytes(32));
    const row = { tenantId: 'acme', webhookId: 7 };
    const a = box.seal('whsec_abc', row);
    const b = box.seal('whsec_abc', row);
    expect(a).toMatch(/^v2:[\w-]{8}:[\w-]{16}:[\w-]{22}:[\w-]+$/);
    expect(a.startsWith(box.currentPrefix) && box.isCurrent(a)).toBe(true);
    expect(a).not.toBe(b);
    expect(a).not.toContain('abc');
    expect(box.open(a, row)).toBe('whsec_abc');
    expect(box.open('whsec_legacy', row)).toBe('whsec_legacy');
    expect(isSealed(a) && !isSealed('whsec_legacy')).toBe(true);
    expect(() => createSecretBox(randomBytes(32)).open(a, row)).toThrow(/WEBHOOK_SECRET_KEY/);
    const [, kid, iv, tag, ct] = a.split(':');
    const flipped = Buffer.from(ct, 'base64url');
    flipped[0] ^= 1;
    expect(() => box.open(`v2:${kid}:${iv}:${tag}:${flipped.toString('base64url')}`, row)).toThrow();
    expect(() => box.open('v2:nonsense', row)).toThrow(/malformed/);
    expect(() => box.open('v1:nonsense', row)).toThrow(/malformed/);
    expect(() => createSecretBox(randomBytes(16))).toThrow(/32 bytes/);
  });

  it('WEBHOOK_SECRET_KEY must be 32 bytes of base64', () => {
    const key = randomBytes(32);
    expect(parseSecretKey(key.toString('base64')).equals(key)).toBe(true);
    expect(parseSecretKey(key.toString('base64url')).equals(key)).toBe(true);
    expect(loadConfig({ WEBHOOK_SECRET_KEY: key.toString('base64') }).webhookSecretKey?.equals(key)).toBe(true);
    for (const bad of ['short', randomBytes(31).toString('base64'), 'not base64 at all!!']) {
      expect(() => loadConfig({ WEBHOOK_SECRET_KEY: bad }), bad).toThrow(/WEBHOOK_SECRET_KEY must be 32 bytes/);
    }
    expect(() => loadConfig({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'maybe' })).toThrow(/true or false/);
    expect(loadConfig({}).webhookAllowPrivateNetworks).toBe(false);
  });

  it('creates the key file once, 0600, race-safe; warns in production mode when the key comes from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-key-'));
    const path = join(dir, 'sub', 'webhook-secret.key');
    const keys = await Promise.all([1, 2, 3, 4, 5].map(() => loadOrCreateSecretKeyFile(path)));
    expect(keys[0]).toHaveLength(32);
    for (const k of keys) expect(k.equals(keys[0])).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await loadOrCreateSecretKeyFile(path)).equals(keys[0])).toBe(true);

    const fromFile = await loadWebhookSecrets({ webhookSecretKey: null, webhookSecretKeyPath: path, databaseUrl: 'postgres://x/y' });
    expect(fromFile).toMatchObject({ source: 'file', warning: expect.stringMatching(/WEBHOOK_SECRET_KEY/) });
    expect((await loadWebhookSecrets({ webhookSecretKey: null, webhookSecretKeyPath: path, databaseUrl: null })).warning).toBeNull();
    const fromEnv = await loadWebhookSecrets({ webhookSecretKey: keys[0], webhookSecretKeyPath: join(dir, 'unused'), databaseUrl: 'postgres://x/y' });
    expect(fromEnv).toMatchObject({ source: 'env', warning: null });
    const row = { tenantId: 't', webhookId: 1 };
    expect(fromEnv.box.open(fromFile.box.seal('s', row), row)).toBe('s'); // the same key, whichever source
  });
});

describe('SSRF guard (address policy, sender)', () => {
  it('classifies loopback, private, link-local, unspecified and IPv4-mapped addresses as non-public', () => {
    const refused = ['127.0.0.1', '127.1.2.3', '10.0.0.1', '172.16.0.1', '172.31.255.254', '192.168.0.1', '169.254.169.254', '0.0.0.0', '::1', '[::1]', '::',
      'fc00::1', 'fd00:ec2::254', 'fe80::1', 'fe80::1%eth0', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:a9fe:a9fe', '::ffff:10.1.2.3', '0:0:0:0:0:0:0:1', '100.64.0.1'];
    const allowed = ['8.8.8.8', '172.15.255.255', '172.32.0.1', '193.168.0.1', '2001:4860:4860::8888', 'example.com'];
    for (const ip of refused) expect(isNonPublicAddress(ip), ip).toBe(true);
    for (const ip of allowed) expect(isNonPublicAddress(ip), ip).toBe(false);
  });

  it('the lookup refuses a name if ANY of its addresses is non-public, and otherwise hands over exactly what it checked', async () => {
    const fake = (addresses: LookupAddress[]) =>
      ((_host: string, _options: unknown, cb: (e: null, a: LookupAddress[]) => void) => cb(null, addresses)) as unknown as typeof import('node:dns').lookup;
    const run = (addresses: LookupAddress[], all: boolean) =>
      new Promise<unknown>((resolve, reject) =>
        guardedLookup(fake(addresses))('hooks.example.test', { all }, (e: Error | null, a: unknown, family?: number) => (e ? reject(e) : resolve(all ? a : [a, family]))),
      );
    await expect(run([{ address: '93.184.216.34', family: 4 }, { address: '10.0.0.7', family: 4 }], true)).rejects.toThrow(/refused: hooks\.example\.test resolves to a non-public address/);
    await expect(run([{ address: '::ffff:169.254.169.254', family: 6 }], false)).rejects.toThrow(/WEBHOOK_ALLOW_PRIVATE_NETWORKS/);
    expect(await run([{ address: '93.184.216.34', family: 4 }], false)).toEqual(['93.184.216.34', 4]);
    expect(await run([{ address: '93.184.216.34', family: 4 }, { address: '2606:2800::1', family: 6 }], true)).toEqual([
      { address: '93.184.216.34', family: 4 },
      { address: '2606:2800::1', family: 6 },
    ]);
  });

  it('the sender refuses literal non-public targets and names resolving to them, without connecting', async () => {
    const sender = createHttpWebhookSender({ allowPrivateNetworks: false });
    const post = (url: string) => sender.post({ url, body: '{}', headers: {}, timeoutMs: 2_000 });
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://[::1]:1/x', 'http://[::ffff:127.0.0.1]/', 'https://10.0.0.1/', 'http://0.0.0.0:80/']) {
      await expect(post(url), url).rejects.toThrow(/refused/);
    }
    await expect(post('http://localhost:1/x')).rejects.toThrow(/refused: localhost resolves to a non-public address/);
  });
});

describe.each(oneDriver('pglite'))('webhooks under the default configuration on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let receiver: WebhookReceiver;
  let workers: Worker[] = [];

  /** A worker on the service's data dir (same key file) with extra env. */
  const newWorker = async (env: Record<string, string> = {}) => {
    const worker = await createWorker(testConfig(t.dataDir, env), {
      clock: t.clock,
      storage: database.storage,
      crl: null,
      revocations: t.service.crl.listener,
      logger: silentLogger,
      holder: `test-${workers.length}`,
    });
    workers.push(worker);
    return worker;
  };
  const tick = async (worker: Worker) => {
    const reports = await worker.runOnce();
    expect(reports.filter((r) => r.status !== 'ok'), JSON.stringify(reports)).toEqual([]);
  };
  /** An alert.opened event for every webhook of acme. */
  let deviceNo = 0;
  const raiseAlert = async (worker: Worker) => {
    const device = `SEC-${++deviceNo}`;
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: device })).status).toBe(201);
    expect((await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: 10 })).status).toBe(201);
    await tick(worker);
  };
  const operator = async (sql: string, params: unknown[] = []) => (await database.db.asOperator((tx) => tx.query<Record<string, any>>(sql, params))).rows;
  const deliveries = async (id: number) => (await t.call('acme', 'GET', `/customer/notification-webhooks/${id}/deliveries`)).json.deliveries;
  /** The receiver, by a host name that resolves to 127.0.0.1. */
  const byName = (path: string) => receiver.url(path).replace('127.0.0.1', 'localhost');

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database); // no WEBHOOK_ALLOW_PRIVATE_NETWORKS, no WEBHOOK_SECRET_KEY
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    for (const w of workers) await w.close();
    await receiver?.close();
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    for (const w of workers) await w.close();
    workers = [];
    await database.reset();
    receiver.clear();
  });

  it('refuses a literal loopback/private/link-local URL at create and update (422, nothing written)', async () => {
    for (const url of ['http://127.0.0.1:8080/hook', 'http://2130706433/', 'http://[::1]/', 'https://169.254.169.254/latest/meta-data/', 'http://10.0.0.5/', 'http://172.20.1.1/',
      'http://192.168.1.10/', 'http://[::ffff:127.0.0.1]/', 'http://[fd00::1]/', 'http://[fe80::1]/', 'http://0.0.0.0/']) {
      const res = await t.call('acme', 'POST', '/customer/notification-webhooks', { url });
      expect(res.status, url).toBe(422);
      expect(res.json.code).toBe('VALIDATION_FAILED');
      expect(res.body).toMatch(/private or link-local networks are refused .*WEBHOOK_ALLOW_PRIVATE_NETWORKS/);
    }
    expect(await operator('SELECT id FROM notification_webhooks')).toEqual([]);
    expect(await operator(`SELECT id FROM audit_events WHERE action LIKE 'webhook.%'`)).toEqual([]);

    // a host name is accepted (it is checked when delivering); changing it to a private literal is not
    const created = await t.call('acme', 'POST', '/customer/notification-webhooks', { url: 'https://hooks.example.test/x' });
    expect(created.status).toBe(201);
    const patched = await t.call('acme', 'PATCH', `/customer/notification-webhooks/${created.json.webhook.id}`, { url: 'http://169.254.169.254/' });
    expect(patched.status).toBe(422);
    expect(patched.json.code).toBe('VALIDATION_FAILED');
    expect((await t.call('acme', 'GET', `/customer/notification-webhooks/${created.json.webhook.id}`)).json.webhook.url).toBe('https://hooks.example.test/x');
  });

  it('refuses at delivery a host name resolving to loopback (a failed attempt with a clear error); WEBHOOK_ALLOW_PRIVATE_NETWORKS=true delivers it', async () => {
    const hook = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: byName('/local') })).json;
    expect(hook.webhook.url).toBe(byName('/local'));
    await raiseAlert(await newWorker());
    expect(receiver.received()).toEqual([]);
    const [d] = await deliveries(hook.webhook.id);
    expect(d).toMatchObject({ status: 'PENDING', attempts: 1, last_status_code: null });
    expect(d.last_error).toMatch(/refused: localhost resolves to a non-public address.*WEBHOOK_ALLOW_PRIVATE_NETWORKS=true/);
    expect(d.last_error).not.toContain('127.0.0.1');

    const allowed = await newWorker({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
    t.clock.advance(30_000);
    await tick(allowed);
    expect(receiver.verified('/local', hook.secret).map((r) => r.body.attempt)).toEqual([2]);
    expect((await deliveries(hook.webhook.id))[0]).toMatchObject({ status: 'DELIVERED', last_error: null });
  });

  it('stores the secret encrypted (key file 0600); deliveries verify with the secret shown at creation, then with the rotated one', async () => {
    const worker = await newWorker({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' });
    const hook = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: byName('/enc') })).json;
    expect(statSync(join(t.dataDir, 'webhook-secret.key')).mode & 0o777).toBe(0o600);
    const plain = hook.secret.slice('whsec_'.length);
    const rows = async () => (await operator('SELECT row_to_json(w)::text AS j, secret FROM notification_webhooks w WHERE id = $1', [hook.webhook.id]))[0];
    const row = await rows();
    expect(row.secret).toMatch(/^v2:/);
    expect(row.j).not.toContain(plain);
    expect(row.j).not.toContain(Buffer.from(plain).toString('base64')); // nor in another encoding

    await raiseAlert(worker);
    expect(receiver.verified('/enc', hook.secret)).toHaveLength(1);

    const rotated = (await t.call('acme', 'POST', `/customer/notification-webhooks/${hook.webhook.id}/rotate-secret`)).json;
    const after = await rows();
    expect(after.secret).toMatch(/^v2:/);
    expect(after.secret).not.toBe(row.secret);
    expect(after.j).not.toContain(rotated.secret.slice('whsec_'.length));
    receiver.clear();
    await raiseAlert(worker);
    expect(receiver.received('/enc')).toHaveLength(1);
    expect(receiver.verified('/enc', rotated.secret)).toHaveLength(1);
    expect(receiver.verified('/enc', hook.secret)).toHaveLength(0);
  });

  it('a legacy plaintext secret still delivers, and the worker encrypts it; a worker with another key fails the attempt, not the run', async () => {
    const legacy = `whsec_${randomBytes(32).toString('base64url')}`;
    const [{ id }] = await operator(
      `INSERT INTO notification_webhooks (tenant_id, url, secret, created_by, created_at, updated_at) VALUES ('acme', $1, $2, 'legacy', now(), now()) RETURNING id`,
      [byName('/legacy'), legacy],
    );
    await raiseAlert(await newWorker({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' }));
    expect(receiver.verified('/legacy', legacy)).toHaveLength(1);
    const [{ secret }] = await operator('SELECT secret FROM notification_webhooks WHERE id = $1', [id]);
    expect(secret).toMatch(/^v2:/);
    expect(secret).not.toContain(legacy.slice(6));

    // still the same secret after encryption
    receiver.clear();
    await raiseAlert(workers[0]);
    expect(receiver.verified('/legacy', legacy)).toHaveLength(1);

    // a replica configured with another key cannot decrypt: the delivery fails with a clear error
    const stranger = await newWorker({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_SECRET_KEY: randomBytes(32).toString('base64') });
    receiver.clear();
    await raiseAlert(stranger);
    expect(receiver.received()).toEqual([]);
    expect((await deliveries(Number(id)))[0]).toMatchObject({ status: 'PENDING', attempts: 1, last_error: expect.stringMatching(/not sent: .*WEBHOOK_SECRET_KEY/) });
  });
});
