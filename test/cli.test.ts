import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliHere } from './support/cli-here.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService } from './support/service.ts';
import { run } from './support/openssl.ts';
import { scaled } from './support/timeouts.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const cli = (args: string[], env: Record<string, string>, timeout = 60_000) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout });
const tmp = () => mkdtempSync(join(tmpdir(), 'certfleet-cli-'));

describe('certfleet CLI', () => {
  const children: ReturnType<typeof spawn>[] = [];
  // One PGlite database for the services below (opening one costs 2.5 to 3.5 s of CPU), emptied for each.
  let pglite: TestDatabase | undefined;
  const emptyDatabase = async () => {
    if (pglite) await pglite.reset();
    else pglite = await createTestDatabase('pglite');
    return pglite;
  };
  afterAll(async () => {
    children.forEach((c) => c.kill('SIGKILL'));
    await pglite?.close();
  });

  it('init-ca creates an EC P-256 CA by default (key 0600), RSA 3072 on request, and never overwrites', async () => {
    const dir = tmp();
    const ec = cli(['init-ca', '--out', dir, '--json'], {}); // through a real process: its exit code and stdout
    expect(ec.status, ec.stderr).toBe(0);
    const out = JSON.parse(ec.stdout);
    expect(statSync(out.key_path).mode & 0o777).toBe(0o600);
    expect(run('openssl', ['x509', '-in', out.cert_path, '-noout', '-text']).out).toMatch(/NIST CURVE: P-256[\s\S]*CA:TRUE/);
    expect((await cliHere(['init-ca', '--out', dir], {})).status).toBe(1);
    const rsaDir = tmp();
    const rsa = await cliHere(['init-ca', '--out', rsaDir, '--key-type', 'rsa-3072', '--json'], {});
    expect(rsa.status, rsa.stderr).toBe(0);
    expect(JSON.parse(rsa.stdout)).toMatchObject({ key_type: 'rsa-3072' });
    expect(run('openssl', ['x509', '-in', join(rsaDir, 'device-ca.crt'), '-noout', '-text']).out).toContain('Public-Key: (3072 bit)');
    expect((await cliHere(['init-ca', '--out', tmp(), '--key-type', 'dsa'], {})).status).toBe(2); // a flag value outside its choices: usage error
  });

  it('token prints a JWT the service accepts, with the tenant and role asked for', async () => {
    const database = await emptyDatabase();
    const dataDir = tmp();
    const t = await startTestService(database, { dataDir });
    try {
      const res = cli(['token', '--tenant', 'acme', '--role', 'tenant-admin', '--ttl', '10m'], { CERTFLEET_DATA_DIR: dataDir });
      expect(res.status, res.stderr).toBe(0);
      const token = res.stdout.trim();
      const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
      expect(payload).toMatchObject({ tenant_id: 'acme', realm_access: { roles: ['tenant-admin'] } });
      expect(payload.exp - payload.iat).toBe(600);
      const list = await t.service.app.inject({ method: 'GET', url: '/customer/devices', headers: { authorization: `Bearer ${token}` } });
      expect(list.statusCode).toBe(200);
      expect((await cliHere(['token', '--role', 'customer'], { CERTFLEET_DATA_DIR: dataDir })).status).toBe(2); // usage errors exit 2
      expect((await cliHere(['token', '--tenant', 'a b'], { CERTFLEET_DATA_DIR: dataDir })).status).toBe(2);
    } finally {
      await t.close();
    }
  });

  it('a second process on the same embedded data dir exits with a clear message', async () => {
    const dataDir = tmp();
    const first = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, CERTFLEET_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info' } });
    children.push(first);
    let out = '';
    first.stdout!.on('data', (d) => (out += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`first serve did not start: ${out}`)), scaled(45_000));
      first.stdout!.on('data', () => out.includes('listening on') && (clearTimeout(timer), resolve()));
    });
    expect(out).toContain('development CA created now');
    expect(statSync(join(dataDir, 'db')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, 'pki', 'device-ca.key')).mode & 0o777).toBe(0o600);
    const second = cli(['serve'], { CERTFLEET_DATA_DIR: dataDir, PORT: '0' });
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`in use by process ${first.pid}`));
    first.kill('SIGTERM');
    await new Promise((r) => first.once('exit', r));
    // the lock is released: migrate can open the data dir now
    const after = cli(['migrate'], { CERTFLEET_DATA_DIR: dataDir });
    expect(after.status, after.stderr).toBe(0);
  });

  it('serve refuses a bad PUBLIC_BASE_URL at start with a clear message (it would go into every certificate)', async () => {
    const bads = ['certfleet.example.com', 'ftp://certfleet.example.com', 'https://certfleet example.com', 'https://cértfleet.example', 'https://certfleet.example/?x=1', 'http://'];
    for (const [i, bad] of bads.entries()) {
      // The first through a real process (exit code, stderr); the others in this process: the same check, the same exit code and message.
      const env = { CERTFLEET_DATA_DIR: tmp(), PORT: '0', PUBLIC_BASE_URL: bad };
      const res = i === 0 ? cli(['serve'], env) : await cliHere(['serve'], env);
      expect(res.status, `${bad}: ${res.stdout}`).toBe(1);
      expect(res.stderr).toContain('PUBLIC_BASE_URL must be an absolute http or https URL');
      expect(res.stderr).toContain(bad);
      expect(res.stdout).not.toContain('listening on');
    }
  });

  it('serve and worker exit 1 with the address in the message when their port is taken, instead of running on without a listener', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = String((taken.address() as AddressInfo).port);
    try {
      // Real processes: what must end is the process (before the fix serve logged EADDRINUSE and ran on).
      const serve = cli(['serve'], { CERTFLEET_DATA_DIR: tmp(), PORT: port, HOST: '127.0.0.1' }, scaled(60_000));
      expect(serve.signal, `serve did not exit: ${serve.stderr}`).toBeNull();
      expect(serve.status).toBe(1);
      expect(serve.stderr).toContain(`EADDRINUSE: address already in use 127.0.0.1:${port}`);
      const worker = cli(['worker', '--metrics-port', port], { CERTFLEET_DATA_DIR: tmp(), HOST: '127.0.0.1' }, scaled(60_000));
      expect(worker.signal, `worker did not exit: ${worker.stderr}`).toBeNull();
      expect(worker.status).toBe(1);
      expect(worker.stderr).toContain(`certfleet worker: --metrics-port ${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
      expect(worker.stderr).not.toMatch(/^\s+at /m); // a message, not a stack trace
    } finally {
      taken.close();
    }
  });

  it('in production mode without a Device CA, issuing answers 503 "Device CA not configured"', async () => {
    const database = await emptyDatabase();
    const t = await startTestService(database, { env: { NODE_ENV: 'production' } });
    try {
      expect(t.service.ca.ca).toBeNull();
      await t.call('acme', 'POST', '/customer/devices', { device_id: 'D1' });
      const res = await t.call('acme', 'POST', '/customer/devices/D1/certificates/generate', {});
      expect(res.status).toBe(503);
      expect(res.json).toMatchObject({ code: 'CA_NOT_CONFIGURED', detail: 'Device CA not configured' });
      expect((await t.call('acme', 'GET', '/customer/certificates')).json.total).toBe(0);
    } finally {
      await t.close();
    }
  });

  it('refuses a world-readable CA key', async () => {
    const dir = tmp();
    expect((await cliHere(['init-ca', '--out', dir], {})).status).toBe(0);
    spawnSync('chmod', ['644', join(dir, 'device-ca.key')]);
    const database = await emptyDatabase();
    await expect(
      startTestService(database, { env: { DEVICE_CA_CERT_PATH: join(dir, 'device-ca.crt'), DEVICE_CA_KEY_PATH: join(dir, 'device-ca.key') } }),
    ).rejects.toThrow(/device-ca.key is accessible by group or others \(mode 0644\): run chmod 600/);
  });
});
