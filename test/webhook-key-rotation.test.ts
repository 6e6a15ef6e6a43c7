import { createCipheriv, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRekeyWebhookSecrets } from '../src/app/rekey-webhook-secrets.ts';
import { createWorker } from '../src/composition/worker.ts';
import { createSecretBox } from '../src/pki/secret-box.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { silentLogger } from '../src/support/logger.ts';
import { loadConfig } from '../src/config.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const K1 = randomBytes(32);
const K2 = randomBytes(32);

/** A value in the format earlier versions stored (`v1:`, AES-256-GCM without associated data). */
function sealV1(key: Buffer, plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return `v1:${[iv, cipher.getAuthTag(), ct].map((b) => b.toString('base64url')).join(':')}`;
}

describe.each(DRIVERS)('webhook secret key rotation and row binding on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let receiver: WebhookReceiver;
  let deviceNo = 0;

  const operator = async (sql: string, params: unknown[] = []) => (await database.db.asOperator((tx) => tx.query<Record<string, any>>(sql, params))).rows;
  /** One run of every worker task with these keys: an alert for a new certificate of `tenants`, delivered to their webhooks. */
  const deliverWith = async (box: ReturnType<typeof createSecretBox>, tenants = ['acme', 'other']) => {
    for (const tenant of tenants) {
      const device = `ROT-${++deviceNo}`;
      expect((await t.call(tenant, 'POST', '/customer/devices', { device_id: device })).status).toBe(201);
      expect((await t.call(tenant, 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: 10 })).status).toBe(201);
    }
    const worker = await createWorker(t.config, { clock: t.clock, storage: database.storage, crl: null, secrets: box, logger: silentLogger, holder: `rot-${deviceNo}` });
    try {
      await worker.runOnce();
    } finally {
      await worker.close();
    }
  };
  const hook = async (tenant: string, path: string) => (await t.call(tenant, 'POST', '/customer/notification-webhooks', { url: receiver.url(path) })).json as { webhook: { id: number }; secret: string };
  const lastError = async (id: number) => (await operator('SELECT last_error FROM notification_outbox WHERE webhook_id = $1 ORDER BY id DESC LIMIT 1', [id]))[0]?.last_error;
  const stored = async (id: number) => (await operator('SELECT secret FROM notification_webhooks WHERE id = $1', [id]))[0].secret as string;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', WEBHOOK_SECRET_KEY: K1.toString('base64') } });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    receiver.clear();
  });

  it('binds each ciphertext to its tenant and webhook: copied to another row (same or other tenant) it does not decrypt', async () => {
    const a = await hook('acme', '/a');
    const a2 = await hook('acme', '/a2');
    const b = await hook('other', '/b');
    const aSecret = await stored(a.webhook.id);
    expect(aSecret).toMatch(/^v2:/);
    // an attacker with write access to the table copies A's ciphertext over A2's and B's
    await operator('UPDATE notification_webhooks SET secret = $1 WHERE id = ANY($2::bigint[])', [aSecret, [a2.webhook.id, b.webhook.id]]);
    await deliverWith(createSecretBox(K1));
    expect(receiver.verified('/a', a.secret)).toHaveLength(1);
    expect(receiver.received('/a2')).toEqual([]);
    expect(receiver.received('/b')).toEqual([]);
    expect(await lastError(a2.webhook.id)).toMatch(/not sent: .*belongs to another webhook/);
    expect(await lastError(b.webhook.id)).toMatch(/not sent: .*belongs to another webhook/);
  });

  it('a v1 ciphertext (no associated data) stays readable, and rekey binds it to its row', async () => {
    const legacy = `whsec_${randomBytes(32).toString('base64url')}`;
    const [{ id }] = await operator(
      `INSERT INTO notification_webhooks (tenant_id, url, secret, created_by, created_at, updated_at) VALUES ('acme', $1, $2, 'old-version', now(), now()) RETURNING id`,
      [receiver.url('/v1'), sealV1(K1, legacy)],
    );
    const copyTarget = await hook('other', '/copy');
    await deliverWith(createSecretBox(K1));
    expect(receiver.verified('/v1', legacy)).toHaveLength(1);

    const report = await createRekeyWebhookSecrets({ storage: createStorage(database.db), secrets: createSecretBox(K1) })();
    expect(report).toMatchObject({ rekeyed: 2 - 1, failed: [], complete: true }); // the v1 row; the new webhook was already current
    const sealed = await stored(Number(id));
    expect(sealed.startsWith(createSecretBox(K1).currentPrefix)).toBe(true);
    receiver.clear();
    await deliverWith(createSecretBox(K1));
    expect(receiver.verified('/v1', legacy)).toHaveLength(1);
    // now bound: copied to another row it no longer opens
    await operator('UPDATE notification_webhooks SET secret = $1 WHERE id = $2', [sealed, copyTarget.webhook.id]);
    receiver.clear();
    await deliverWith(createSecretBox(K1));
    expect(receiver.received('/copy')).toEqual([]);
  });

  it('rotates to a new key without downtime: both keys read meanwhile, resumable, then the old key can go', async () => {
    const hooks = [await hook('acme', '/r1'), await hook('acme', '/r2'), await hook('other', '/r3')];
    const plaintext = `whsec_${randomBytes(32).toString('base64url')}`;
    const [{ id: plainId }] = await operator(
      `INSERT INTO notification_webhooks (tenant_id, url, secret, created_by, created_at, updated_at) VALUES ('other', $1, $2, 'older-version', now(), now()) RETURNING id`,
      [receiver.url('/r4'), plaintext],
    );
    const secretOf: Record<string, string> = { '/r1': hooks[0].secret, '/r2': hooks[1].secret, '/r3': hooks[2].secret, '/r4': plaintext };
    const allVerified = () => Object.entries(secretOf).every(([path, secret]) => receiver.verified(path, secret).length > 0);
    const both = createSecretBox(K2, [K1]);

    // phase 1: every replica runs with both keys; new seals use the new key
    const r5 = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/r5') })).json; // sealed by the service: K1
    secretOf['/r5'] = r5.secret;
    await deliverWith(both);
    expect(allVerified()).toBe(true);

    // an interrupted run: two rows re-encrypted, the rest still readable by both keys
    const rekey = createRekeyWebhookSecrets({ storage: createStorage(database.db), secrets: both });
    expect(await rekey({ batchSize: 1, maxRows: 2 })).toMatchObject({ rekeyed: 2, complete: false });
    receiver.clear();
    await deliverWith(both);
    expect(allVerified()).toBe(true);
    // resumed: the rest (the plaintext row was sealed under the new key by the worker's first run), then nothing left
    expect(await rekey({ batchSize: 2 })).toMatchObject({ rekeyed: 2, failed: [], complete: true });
    expect(await rekey()).toMatchObject({ rekeyed: 0, complete: true });
    for (const row of await operator('SELECT secret FROM notification_webhooks')) expect(both.isCurrent(row.secret)).toBe(true);
    expect(await stored(Number(plainId))).not.toContain(plaintext.slice(6));

    // phase 2: the old key removed; everything still delivers, and the old key alone opens nothing
    receiver.clear();
    await deliverWith(createSecretBox(K2));
    expect(allVerified()).toBe(true);
    receiver.clear();
    await deliverWith(createSecretBox(K1));
    expect(receiver.received()).toEqual([]);
  });

  it('rekey re-encrypts the provisioning approval webhook secret too (it was left under the old key before)', async () => {
    const put = await t.call(
      'acme',
      'PUT',
      '/api/v1/customer/provisioning-policy',
      { admit: { cn_patterns: [], serials: [] }, device_id: { from: 'cn', pattern: null }, site_id: null, approval_webhook: { url: receiver.url('/approve'), timeout_ms: 5000 } },
      'tenant-admin',
    );
    expect(put.status, put.body).toBe(200);
    const approvalSecret = put.json.approval_secret as string;
    const storedApproval = async () => (await operator(`SELECT approval_secret FROM provisioning_policies WHERE tenant_id = 'acme'`))[0].approval_secret as string;
    const before = await storedApproval();
    const both = createSecretBox(K2, [K1]);
    expect(both.isCurrent(before)).toBe(false);
    const report = await createRekeyWebhookSecrets({ storage: createStorage(database.db), secrets: both })();
    expect(report).toMatchObject({ rekeyed: 1, failed: [], complete: true });
    const after = await storedApproval();
    expect(both.isCurrent(after)).toBe(true);
    // The new key alone opens it, bound to the tenant's policy (row id 0), and it is the secret the tenant was shown.
    expect(createSecretBox(K2).open(after, { tenantId: 'acme', webhookId: 0 })).toBe(approvalSecret);
    expect(() => createSecretBox(K2).open(after, { tenantId: 'other', webhookId: 0 })).toThrow();
    expect(await createRekeyWebhookSecrets({ storage: createStorage(database.db), secrets: both })()).toMatchObject({ rekeyed: 0, complete: true });
  });

  it.runIf(kind === 'pg')('`certfleet webhooks rekey` re-encrypts a Postgres deployment and says when the previous key can go (pg: the command opens its own connection)', async () => {
    await hook('acme', '/cli');
    const { rekeyCommand } = await import('../src/cli/webhooks-rekey.ts');
    const config = loadConfig({ DATABASE_URL: database.url!, WEBHOOK_SECRET_KEY: K2.toString('base64'), WEBHOOK_SECRET_KEY_PREVIOUS: K1.toString('base64'), CERTFLEET_DATA_DIR: t.dataDir });
    const out: string[] = [];
    const log = console.log;
    console.log = (line: string) => void out.push(line);
    try {
      expect(await rekeyCommand({ json: true }, config)).toBe(0);
    } finally {
      console.log = log;
    }
    expect(JSON.parse(out.join('\n'))).toMatchObject({ rekeyed: 1, failed: [], complete: true });
    for (const row of await operator('SELECT secret FROM notification_webhooks')) expect(createSecretBox(K2).isCurrent(row.secret)).toBe(true);
    // a secret neither key opens: reported, exit code 1
    await operator(`UPDATE notification_webhooks SET secret = $1`, [sealV1(randomBytes(32), 'x')]);
    out.length = 0;
    console.log = (line: string) => void out.push(line);
    try {
      expect(await rekeyCommand({ json: true }, config)).toBe(1);
    } finally {
      console.log = log;
    }
    expect(JSON.parse(out.join('\n')).failed).toHaveLength(1);
  });
});
