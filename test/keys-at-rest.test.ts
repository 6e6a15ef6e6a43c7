/**
 * Issue 10.7: key files with group/other permission bits (or in a folder others can write)
 * are refused; an encrypted PKCS#8 CA key works with its passphrase; no key, token or
 * secret reaches the logs at any level.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { createDeviceCa, writeDeviceCa } from '../src/pki/device-ca.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { shortLivedNodeFlags } from './support/dist.ts';
import { startTestService } from './support/service.ts';
import { startWebhookReceiver } from './support/webhook-receiver.ts';
import { scaled } from './support/timeouts.ts';

const BIN = new URL('../bin/certfleet.js', import.meta.url).pathname;
const tmp = () => mkdtempSync(join(tmpdir(), 'certfleet-keys-'));

describe('key files at rest', () => {
  let database: TestDatabase;

  let prepared: string;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    prepared = tmp();
    await (await startTestService(database, { dataDir: prepared })).close();
  });
  afterAll(async () => database?.close());

  /**
   * A data dir where a first service start created the dev CA, dev token key and webhook secret
   * key: a copy (modes kept) of the one the file's first start made, not one more start per test.
   */
  function preparedDataDir(): string {
    const dataDir = tmp();
    cpSync(prepared, dataDir, { recursive: true });
    for (const file of Object.values(files)) expect(statSync(join(dataDir, file)).mode & 0o777, file).toBe(statSync(join(prepared, file)).mode & 0o777);
    return dataDir;
  }

  const files = {
    'the Device CA key': 'pki/device-ca.key',
    'the webhook secret key': 'webhook-secret.key',
    'the development token signing key': 'dev-token-key.json',
  };

  for (const [what, file] of Object.entries(files)) {
    it.each([0o640, 0o604, 0o610, 0o602])(`${what} with mode %o is refused, naming the file and chmod 600`, async (mode) => {
      const dataDir = preparedDataDir();
      const path = join(dataDir, file);
      chmodSync(path, mode);
      await expect(startTestService(database, { dataDir })).rejects.toThrow(`${what} ${path} is accessible by group or others (mode 0${mode.toString(8)}): run chmod 600 ${path}`);
      chmodSync(path, 0o600);
      await (await startTestService(database, { dataDir })).close();
    });

    it(`${what} in a folder writable by group or others is refused (chmod go-w)`, async () => {
      const dataDir = preparedDataDir();
      // The dev token key shares the data dir with the webhook secret key file: take that one from the environment.
      const env: Record<string, string> = file === 'dev-token-key.json' ? { WEBHOOK_SECRET_KEY: Buffer.alloc(32, 7).toString('base64') } : {};
      const path = join(dataDir, file);
      const folder = join(path, '..');
      for (const mode of [0o770, 0o703]) {
        chmodSync(folder, mode);
        await expect(startTestService(database, { dataDir, env })).rejects.toThrow(`the folder ${folder} of ${what} ${path} is writable by group or others`);
      }
      chmodSync(folder, 0o700);
      await (await startTestService(database, { dataDir, env })).close();
    });
  }

  // The certificate is public (0644 is fine), but whoever can rewrite it changes what certfleet
  // signs as and serves as the trust anchor: writable by group or others is refused like the key.
  it.each([0o664, 0o646, 0o666])('the Device CA certificate with mode %o is refused, naming the file and chmod go-w', async (mode) => {
    const dataDir = preparedDataDir();
    const path = join(dataDir, 'pki/device-ca.crt');
    chmodSync(path, mode);
    await expect(startTestService(database, { dataDir })).rejects.toThrow(`the Device CA certificate ${path} is writable by group or others (mode 0${mode.toString(8)}): run chmod go-w ${path}`);
    chmodSync(path, 0o644);
    await (await startTestService(database, { dataDir })).close();
  });

  it('the Device CA certificate in a folder writable by group or others is refused (chmod go-w)', async () => {
    const dir = tmp();
    const certDir = join(dir, 'certs');
    mkdirSync(certDir, { mode: 0o755 });
    chmodSync(dir, 0o700);
    await writeDeviceCa(await createDeviceCa({ now: new Date() }), join(certDir, 'ca.crt'), join(dir, 'keys', 'ca.key'));
    const env = { DEVICE_CA_CERT_PATH: join(certDir, 'ca.crt'), DEVICE_CA_KEY_PATH: join(dir, 'keys', 'ca.key') };
    chmodSync(certDir, 0o777);
    await expect(startTestService(database, { env })).rejects.toThrow(`the folder ${certDir} of the Device CA certificate ${join(certDir, 'ca.crt')} is writable by group or others`);
    chmodSync(certDir, 0o755);
    await (await startTestService(database, { env })).close();
  });

  it('an encrypted PKCS#8 CA key works with DEVICE_CA_KEY_PASSPHRASE_FILE or DEVICE_CA_KEY_PASSPHRASE; missing or wrong passphrase is a clear error', async () => {
    const dir = tmp();
    const plain = await createDeviceCa({ now: new Date() });
    await writeDeviceCa(plain, join(dir, 'ca.crt'), join(dir, 'plain.key'));
    writeFileSync(join(dir, 'pass'), 'correct horse battery staple\n', { mode: 0o600 });
    const enc = spawnSync('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', join(dir, 'plain.key'), '-out', join(dir, 'ca.key'), '-passout', `file:${join(dir, 'pass')}`]);
    expect(enc.status, String(enc.stderr)).toBe(0);
    chmodSync(join(dir, 'ca.key'), 0o600);
    expect(readFileSync(join(dir, 'ca.key'), 'utf8')).toContain('BEGIN ENCRYPTED PRIVATE KEY');
    const env = { DEVICE_CA_CERT_PATH: join(dir, 'ca.crt'), DEVICE_CA_KEY_PATH: join(dir, 'ca.key') };

    await expect(startTestService(database, { env })).rejects.toThrow(/is encrypted: give its passphrase in DEVICE_CA_KEY_PASSPHRASE_FILE/);
    await expect(startTestService(database, { env: { ...env, DEVICE_CA_KEY_PASSPHRASE: 'wrong' } })).rejects.toThrow(/cannot decrypt the Device CA key .*wrong passphrase/);
    chmodSync(join(dir, 'pass'), 0o644);
    await expect(startTestService(database, { env: { ...env, DEVICE_CA_KEY_PASSPHRASE_FILE: join(dir, 'pass') } })).rejects.toThrow(/passphrase file .* run chmod 600/);
    chmodSync(join(dir, 'pass'), 0o600);

    const passphrases: Record<string, string>[] = [{ DEVICE_CA_KEY_PASSPHRASE_FILE: join(dir, 'pass') }, { DEVICE_CA_KEY_PASSPHRASE: 'correct horse battery staple' }];
    for (const extra of passphrases) {
      await database.reset();
      const t = await startTestService(database, { env: { ...env, ...extra } });
      try {
        expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
        const res = await t.call('acme', 'POST', '/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
        expect(res.status).toBe(201);
        expect(res.json.ca_cert_pem).toBe(plain.certPem);
      } finally {
        await t.close();
      }
    }
  });
});

describe('no key, token or secret in the logs (LOG_LEVEL=trace, child process)', () => {
  let child: ChildProcess | null = null;
  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('a full flow logs none of them', async () => {
    const dataDir = tmp();
    mkdirSync(join(dataDir, 'pki'), { mode: 0o700 });
    writeFileSync(join(dataDir, 'pass'), 'log-test-passphrase\n', { mode: 0o600 });
    const plain = await createDeviceCa({ now: new Date() });
    await writeDeviceCa(plain, join(dataDir, 'pki/device-ca.crt'), join(dataDir, 'plain.key'));
    spawnSync('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', join(dataDir, 'plain.key'), '-out', join(dataDir, 'pki/device-ca.key'), '-passout', `file:${join(dataDir, 'pass')}`]);
    chmodSync(join(dataDir, 'pki/device-ca.key'), 0o600);
    const receiver = await startWebhookReceiver();
    let output = '';
    child = spawn(process.execPath, [...shortLivedNodeFlags(), BIN, 'serve'], {
      env: {
        ...process.env,
        CERTFLEET_DATA_DIR: dataDir,
        PORT: '0',
        LOG_LEVEL: 'trace',
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
        DEVICE_CA_KEY_PASSPHRASE_FILE: join(dataDir, 'pass'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start: ${output}`)), scaled(90_000));
      const check = () => {
        const m = /certfleet listening on (http:\/\/[^\s"]+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child!.stdout!.on('data', check);
      child!.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${output}`)));
    });

    const key = await loadOrCreateDevSigningKey(join(dataDir, 'dev-token-key.json'));
    const token = await key.sign({ tenantId: 'acme', roles: ['customer'], subject: 'log-test', ttlSeconds: 600, now: new Date() });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, json: (await res.json()) as Record<string, any> };
    };
    expect((await call('POST', '/customer/devices', { device_id: 'D1' })).status).toBe(201);
    const rsa = await call('POST', '/customer/devices/D1/certificates/generate', { key_type: 'rsa-2048' });
    const ec = await call('POST', '/customer/devices/D1/certificates/generate', { key_type: 'ec-p256' });
    expect([rsa.status, ec.status]).toEqual([201, 201]);
    const webhook = await call('POST', '/customer/notification-webhooks', { url: receiver.url('/hook') });
    expect(webhook.status).toBe(201);
    const rotated = await call('POST', `/customer/notification-webhooks/${webhook.json.webhook.id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    const revoked = await call('POST', `/customer/certificates/${ec.json.certificate.id}/revoke`, { reason: 'keyCompromise' });
    expect(revoked.status).toBe(200);
    // A failed authentication and a bad request too: error paths must not echo the token either.
    expect((await fetch(`${base}/customer/devices`, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
    // Wait until the revocation reached the CRL log line, then stop the service so every line is flushed.
    await new Promise<void>((resolve) => {
      const check = () => /"event":"crl_published"[^\n]*"entries":1/.test(output) && resolve();
      child!.stdout!.on('data', check);
      check();
    });
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
    child = null;
    await receiver.close();

    expect(output).toMatch(/"level":"info",[^\n]*"msg":"incoming request"/); // request logging was on
    const pemBody = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    const secrets: Record<string, string[]> = {
      'CA private key': [pemBody(plain.keyPem), pemBody(readFileSync(join(dataDir, 'pki/device-ca.key'), 'utf8')).slice(0, 64)],
      'CA key passphrase': ['log-test-passphrase'],
      'dev token signing key': [String(JSON.parse(readFileSync(join(dataDir, 'dev-token-key.json'), 'utf8')).d)],
      'bearer token': [token, token.split('.')[2]],
      'webhook secrets': [webhook.json.secret, rotated.json.secret],
      'webhook secret key': [readFileSync(join(dataDir, 'webhook-secret.key'), 'utf8').trim()],
      'device private keys': [pemBody(rsa.json.private_key_pem), pemBody(ec.json.private_key_pem)],
    };
    for (const [what, values] of Object.entries(secrets)) {
      for (const value of values) {
        expect(value.length, what).toBeGreaterThan(15);
        // Any 16-character piece of the secret would be a leak (e.g. one PEM line).
        for (let i = 0; i + 16 <= value.length; i += 16) {
          expect(output.includes(value.slice(i, i + 16)), `${what} appears in the log output`).toBe(false);
        }
      }
    }
  }, scaled(240_000));
});
