import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/support/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { healthz, slowClient, type Slow } from './support/slow-clients.ts';

const TENANT = 'acmetenant42';

// One PGlite database for the file's services (opening one costs 2.5 to 3.5 s of CPU): none of
// them reads what another wrote.
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase('pglite');
});
afterAll(async () => {
  await database?.close();
});

describe('exposure: /metrics and /readyz', () => {
  const scrape = (t: TestService, headers: Record<string, string> = {}) => t.service.app.inject({ method: 'GET', url: '/metrics', headers });

  it('/metrics carries no tenant ids unless METRICS_TENANT_LABELS=true', async () => {
    const t = await startTestService(database);
    try {
      await t.call(TENANT, 'POST', '/customer/devices', { device_id: 'M-1' });
      expect((await t.call(TENANT, 'POST', '/customer/devices/M-1/certificates/generate', { validity_days: 20 })).status).toBe(201);
      const text = (await scrape(t)).body;
      expect(text).toMatch(/^certfleet_certificate_soonest_expiry_timestamp_seconds \d/m);
      expect(text).not.toContain(TENANT);
      expect(text).not.toMatch(/tenant="/);
    } finally {
      await t.close();
    }
    const labelled = await startTestService(database, { env: { METRICS_TENANT_LABELS: 'true' } });
    try {
      expect((await scrape(labelled)).body).toContain(`certfleet_certificate_soonest_expiry_timestamp_seconds{tenant="${TENANT}"}`);
    } finally {
      await labelled.close();
    }
  });

  it('/metrics requires the bearer METRICS_TOKEN when set', async () => {
    const t = await startTestService(database, { env: { METRICS_TOKEN: 'scrape-secret-1' } });
    try {
      const refused = await scrape(t);
      expect(refused.statusCode).toBe(401);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.json().code).toBe('UNAUTHENTICATED');
      expect((await scrape(t, { authorization: 'Bearer wrong' })).statusCode).toBe(401);
      expect((await scrape(t, { authorization: `Bearer ${await t.token(TENANT)}` })).statusCode).toBe(401);
      const ok = await scrape(t, { authorization: 'Bearer scrape-secret-1' });
      expect(ok.statusCode).toBe(200);
      expect(ok.body).toContain('certfleet_certificates');
    } finally {
      await t.close();
    }
  });
});

describe('exposure: the worker\'s /metrics', () => {
  it('requires METRICS_TOKEN too', { timeout: 120_000 }, async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CERTFLEET_DATA_DIR: mkdtempSync(join(tmpdir(), 'certfleet-exposure-')), METRICS_TOKEN: 'worker-scrape-1', LOG_LEVEL: 'warn' };
    delete env.DATABASE_URL;
    delete env.NODE_ENV;
    const child = spawn(process.execPath, [join(import.meta.dirname, 'support', 'certfleet-source.js'), 'worker', '--metrics-port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let err = '';
        child.stderr!.on('data', (d) => {
          err += d;
          const m = /metrics on [^ ]+:(\d+)\/metrics/.exec(err);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${err}`)));
      });
      const scrape = (authorization?: string) =>
        fetch(`http://127.0.0.1:${port}/metrics`, { headers: authorization ? { authorization } : {} }).then(async (r) => ({ status: r.status, body: await r.text() }));
      expect((await scrape()).status).toBe(401);
      expect((await scrape('Bearer nope')).status).toBe(401);
      const ok = await scrape('Bearer worker-scrape-1');
      expect(ok.status).toBe(200);
      expect(ok.body).toContain('certfleet_worker_task');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  });
});

describe('exposure: /readyz on a lost Postgres', () => {
  it('answers 503 without the database error text', async () => {
    const pgDatabase = await createTestDatabase('pg');
    const t = await startTestService(pgDatabase, { overrides: { publishCrl: false } });
    let closed = false;
    try {
      expect((await t.service.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
      await pgDatabase.close(); // drops the database and ends the pool
      closed = true;
      const error = await pgDatabase.db.asOperator((tx) => tx.query('SELECT 1')).then(
        () => null,
        (e: Error) => e.message,
      );
      expect(error).toBeTruthy();
      const res = await t.service.app.inject({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toEqual({ status: 'unavailable', database: 'unavailable' });
      expect(res.body).not.toContain(error!);
    } finally {
      await t.close();
      if (!closed) await pgDatabase.close();
    }
  });
});

describe('exposure: slow clients', () => {
  it('sets header, request and keep-alive timeouts and a connection cap on the listening server', async () => {
    const t = await startTestService(database, {
      env: { HTTP_HEADERS_TIMEOUT_MS: '4000', HTTP_REQUEST_TIMEOUT_MS: '9000', HTTP_KEEP_ALIVE_TIMEOUT_MS: '3000', HTTP_MAX_CONNECTIONS: '777' },
    });
    try {
      const server = t.service.app.server;
      expect(server.headersTimeout).toBe(4000);
      expect(server.requestTimeout).toBe(9000);
      expect(server.keepAliveTimeout).toBe(3000);
      expect(server.maxConnections).toBe(777);
    } finally {
      await t.close();
    }
  });

  it('closes connections beyond HTTP_MAX_CONNECTIONS at once', { timeout: 120_000 }, async () => {
    const t = await startTestService(database, { env: { HTTP_MAX_CONNECTIONS: '5' } });
    const slow: Slow[] = [];
    try {
      await t.service.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (t.service.app.server.address() as AddressInfo).port;
      for (let i = 0; i < 5; i++) slow.push(slowClient(port, 'header', 1_000, 60));
      await Promise.all(slow.map((s) => s.connected));
      await expect.poll(() => new Promise<number>((r) => t.service.app.server.getConnections((_e, n) => r(n))), { timeout: 30_000 }).toBe(5);
      const extra = slowClient(port, 'header', 1_000, 20);
      expect(await extra.closedByServer).toBe(true);
      expect(typeof (await healthz(port))).toBe('string'); // refused while the cap is reached
    } finally {
      for (const s of slow) s.socket.destroy();
      await t.close();
    }
  });

  it('600 slow-header and slow-body connections do not make /healthz fail, and are cut off by the server', { timeout: 180_000 }, async () => {
    const t = await startTestService(database, { env: { HTTP_HEADERS_TIMEOUT_MS: '3000', HTTP_REQUEST_TIMEOUT_MS: '5000' } });
    const slow: Slow[] = [];
    try {
      await t.service.app.listen({ port: 0, host: '127.0.0.1' });
      const port = (t.service.app.server.address() as AddressInfo).port;
      // Without the limits Node waits 60 s for headers and 300 s for a request: these give up after ~40 s.
      for (let i = 0; i < 300; i++) slow.push(slowClient(port, 'header', 1_000, 40), slowClient(port, 'body', 1_000, 40));
      await Promise.all(slow.map((s) => s.connected));
      const statuses = [];
      for (let i = 0; i < 10; i++) statuses.push(await healthz(port));
      expect(statuses).toEqual(Array(10).fill(200));
      const cutOff = await Promise.all(slow.map((s) => s.closedByServer));
      expect(cutOff.filter((c) => !c).length).toBe(0);
      expect(await healthz(port)).toBe(200);
    } finally {
      for (const s of slow) s.socket.destroy();
      await t.close();
    }
  });
});

// From test/probe-logging.test.ts (issue 23: the file's database instead of one of its own).
/** A 10 s healthcheck must not write two info lines every 10 s: probe request lines only at debug. */
describe('exposure: health probes in the log', () => {
  const run = async (level: string) => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const t = await startTestService(database, { env: { LOG_LEVEL: level }, overrides: { logger: createLogger({ level, destination }) } });
    try {
      for (const url of ['/healthz', '/readyz', '/healthz']) expect((await t.service.app.inject({ method: 'GET', url })).statusCode).toBe(200);
      expect((await t.service.app.inject({ method: 'GET', url: '/pki/ca.pem' })).statusCode).toBe(200);
    } finally {
      await t.close();
    }
    const about = (path: string) => lines.filter((l) => JSON.stringify(l).includes(`"${path}"`));
    return { probes: [...about('/healthz'), ...about('/readyz')], other: about('/pki/ca.pem') };
  };

  it('at info: no line for /healthz or /readyz, while other requests are logged', async () => {
    const { probes, other } = await run('info');
    expect(other.length).toBeGreaterThan(0); // request logging works at all
    expect(probes).toEqual([]);
  });

  it('at debug: the probes are logged', async () => {
    const { probes } = await run('debug');
    expect(probes.length).toBeGreaterThanOrEqual(3);
  });
});
