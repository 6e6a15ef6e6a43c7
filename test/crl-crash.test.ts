/**
 * No lost revocation after a crash, on both drivers: `certfleet serve` runs as a child process,
 * a certificate is revoked over HTTP and the process is SIGKILLed the moment the 200 arrives
 * (before, during or after the publication it triggered). After a restart the serial must be in
 * the CRL file within 5 s, whatever the kill interrupted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { crlPemToDer } from '../src/crl/verify-crl.ts';
import { cliHere as cli } from './support/cli-here.ts'; // init-ca and token in this process: serve is what runs as one
import { createThrowawayDatabase, DRIVERS } from './support/databases.ts';
import { run } from './support/openssl.ts';
import { scaled } from './support/timeouts.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');

function request(method: string, url: string, token: string, body?: unknown, onResponse?: (status: number) => void): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers = { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}) };
    const req = http.request(url, { method, headers }, (res) => {
      onResponse?.(res.statusCode ?? 0); // before the body: the kill follows the 200 at once
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : null }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, json: null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** Serial numbers (lower-case hex) listed in a PEM CRL file, as openssl reads them. */
function crlSerials(path: string): string[] {
  if (!existsSync(path)) return [];
  crlPemToDer(readFileSync(path, 'latin1')); // a whole, valid PEM CRL (never half a file)
  const text = run('openssl', ['crl', '-in', path, '-noout', '-text']).out;
  return [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => BigInt('0x' + m[1]).toString(16));
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: () => string) {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`not within ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.each(DRIVERS)('a revocation answered 200 survives SIGKILL (%s)', (kind) => {
  const children = new Set<ChildProcess>();
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const cleanup of cleanups) await cleanup();
  });

  async function environment(): Promise<Record<string, string>> {
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-crash-'));
    const env: Record<string, string> = { CERTFLEET_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'info' }; // the start line is logged at info
    if (kind === 'pg') {
      const database = await createThrowawayDatabase('certfleet_crash');
      cleanups.push(database.drop);
      const ca = await cli(['init-ca', '--out', join(dataDir, 'ca')], {});
      expect(ca.status, ca.stderr).toBe(0);
      Object.assign(env, {
        DATABASE_URL: database.url,
        DEVICE_CA_CERT_PATH: join(dataDir, 'ca', 'device-ca.crt'),
        DEVICE_CA_KEY_PATH: join(dataDir, 'ca', 'device-ca.key'),
        CERTFLEET_AUTH: 'development',
      });
    }
    return env;
  }

  async function serve(env: Record<string, string>) {
    const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), scaled(90_000));
      child.stdout!.on('data', () => {
        const m = /listening on (http:\/\/[^\s"]+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${out}`)));
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    return { base, child, exited, output: () => out };
  }

  it('is in the CRL file within 5 s after a restart, in two kill cycles', async () => {
    const env = await environment();
    const crlPath = join(env.CERTFLEET_DATA_DIR, 'pki', 'device-crl.pem');
    let server = await serve(env);
    const tokenRun = await cli(['token', '--tenant', 'acme', '--ttl', '1h'], env);
    expect(tokenRun.status, tokenRun.stderr).toBe(0);
    const token = tokenRun.stdout.trim();
    expect((await request('POST', `${server.base}/api/v1/customer/devices`, token, { device_id: 'CRASH-1' })).status).toBe(201);

    for (let cycle = 0; cycle < 2; cycle++) {
      const issued = await request('POST', `${server.base}/api/v1/customer/devices/CRASH-1/certificates/generate`, token, { key_type: 'ec-p256' });
      expect(issued.status).toBe(201);
      const { id, serial_number: serial } = issued.json.certificate as { id: number; serial_number: string };
      const victim = server;
      await request('POST', `${victim.base}/api/v1/customer/certificates/${id}/revoke`, token, { reason: 'keyCompromise' }, (status) => {
        expect(status).toBe(200);
        victim.child.kill('SIGKILL');
      });
      await victim.exited;
      children.delete(victim.child);

      server = await serve(env);
      await waitFor(() => crlSerials(crlPath).includes(serial), 5_000, () => `serial ${serial} in ${crlPath} (cycle ${cycle}); serve said: ${server.output()}`);
    }
    server.child.kill('SIGTERM');
    await server.exited;
  }, scaled(240_000));
});
