/**
 * The EST listener is as hard as the API (red-team finding: 100 idle, partial-ClientHello or
 * slow-header connections were all still held after 51 s, and 300 idle connections with
 * `ulimit -n 256` made the whole process fail with EMFILE for 40 s). Here: the limits are set
 * on the listening server, slow and idle clients of every kind are cut off by the server while
 * EST keeps answering (idle TCP, a trickled ClientHello, a completed handshake then nothing, trickled
 * headers, a trickled body), connections beyond EST_MAX_CONNECTIONS are closed at once, the caps are
 * planned within RLIMIT_NOFILE, and a `serve` process under `prlimit --nofile=256` keeps its
 * API, its Postgres connections and its CRL publication working while the EST port is flooded.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { createDeviceCa, writeDeviceCa } from '../src/pki/device-ca.ts';
import { planConnectionCaps } from '../src/support/descriptor-budget.ts';
import { cliHere } from './support/cli-here.ts';
import { createTestDatabase, createThrowawayDatabase, type TestDatabase } from './support/databases.ts';
import type { ServiceOverrides } from '../src/composition/service.ts';
import { startTestService, testConfig } from './support/service.ts';
import { healthz, slowClient, type Slow, type SlowKind } from './support/slow-clients.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const EST_PATHS = { headerPath: '/.well-known/est/cacerts', bodyPath: '/.well-known/est/simpleenroll', tls: true };

/** GET /cacerts over TLS on a fresh connection, trusting the listener's CA: the status or the error. */
const cacerts = (port: number, ca: Buffer) =>
  new Promise<number | string>((resolve) => {
    const req = request({ host: '127.0.0.1', servername: 'localhost', port, path: '/.well-known/est/cacerts', ca, agent: false, timeout: 60_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(e.message));
    req.end();
  });

/** A TLS server identity for the EST listener (the broker's server certificate, as in production). */
async function estTlsFiles(deviceCaCertPem: string, crlPath: string) {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-est-tls-'));
  const broker = await writeBrokerConfig({ outDir: dir, deviceCaCertPem, crlPath });
  return { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), ca: readFileSync(broker.files.combinedCa) };
}

describe('connection caps within RLIMIT_NOFILE', () => {
  const api = (cap: number, explicit = false) => ({ cap, explicit, variable: 'HTTP_MAX_CONNECTIONS' });
  const est = (cap: number, explicit = false) => ({ cap, explicit, variable: 'EST_MAX_CONNECTIONS' });

  it('keeps the caps that fit, lowers default caps to fit, refuses explicit caps that over-commit', () => {
    const usage = { limit: 20_000, open: 40 };
    expect(planConnectionCaps({ usage, database: 14, reserve: 64, api: api(4096), est: est(1024) })).toMatchObject({ api: 4096, est: 1024, budget: 20_000 - 118 });
    // ulimit -n 256: the defaults share what is left (4:1), everything fits with the reserve kept.
    const small = planConnectionCaps({ usage: { limit: 256, open: 40 }, database: 14, reserve: 64, api: api(4096), est: est(1024) });
    expect(small.api + small.est!).toBeLessThanOrEqual(256 - 40 - 14 - 64);
    expect(small.est).toBeGreaterThan(0);
    expect(small.api).toBeGreaterThan(small.est!);
    // An explicit cap is kept and the default one gets the rest.
    expect(planConnectionCaps({ usage: { limit: 256, open: 40 }, database: 14, reserve: 64, api: api(100, true), est: est(1024) })).toMatchObject({ api: 100, est: 38 });
    // Explicit caps that do not fit: refused, naming the variables and the numbers.
    expect(() => planConnectionCaps({ usage: { limit: 256, open: 40 }, database: 14, reserve: 64, api: api(100, true), est: est(100, true) })).toThrow(
      /HTTP_MAX_CONNECTIONS=100 \+ EST_MAX_CONNECTIONS=100 over-commits the file descriptors: RLIMIT_NOFILE is 256 .*leaves 138 for connections/,
    );
    expect(() => planConnectionCaps({ usage: { limit: 100, open: 40 }, database: 14, reserve: 64, api: api(4096), est: null })).toThrow(/no file descriptors are left for HTTP_MAX_CONNECTIONS/);
    // No /proc: as configured.
    expect(planConnectionCaps({ usage: { limit: null, open: null }, database: 14, reserve: 64, api: api(4096), est: est(1024) })).toMatchObject({ api: 4096, est: 1024, budget: null });
  });
});

describe('EST slow clients (in-process, PGlite)', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });

  async function startEst(env: Record<string, string>, overrides: ServiceOverrides = {}) {
    const probe = await startTestService(database);
    const dataDir = probe.dataDir; // the dev CA the EST server certificate is made for
    const tls = await estTlsFiles(probe.service.ca.ca!.certPem, probe.config.crlOutputPath);
    await probe.close();
    const t = await startTestService(database, { dataDir, overrides, env: { EST_PORT: '0', EST_HOST: '127.0.0.1', EST_TLS_CERT_PATH: tls.cert, EST_TLS_KEY_PATH: tls.key, ...env } });
    await t.service.renewal.start(t.service.app.log);
    const server = t.service.renewal.estServer()!.server;
    return { t, server, port: (server.address() as AddressInfo).port, ca: tls.ca };
  }

  it('plans the caps at start within the descriptor limit, and refuses explicit caps that over-commit it', async () => {
    const descriptors = () => ({ limit: 400, open: 50 });
    // Defaults lowered to fit: 400 - 50 open - 64 (PGlite) - 64 (FD_RESERVE) = 222, shared 4:1.
    const { t, server } = await startEst({ EST_TLS_HANDSHAKE_TIMEOUT_MS: '2000' }, { descriptors });
    try {
      expect(t.service.connectionCaps).toMatchObject({ api: 177, est: 44, budget: 222, limit: 400, reserved: 178 });
      expect(t.service.app.server.maxConnections).toBe(177);
      expect(server.maxConnections).toBe(44);
    } finally {
      await t.close();
    }
    await expect(startEst({ HTTP_MAX_CONNECTIONS: '200', EST_MAX_CONNECTIONS: '100' }, { descriptors })).rejects.toThrow(
      /HTTP_MAX_CONNECTIONS=200 \+ EST_MAX_CONNECTIONS=100 over-commits the file descriptors: RLIMIT_NOFILE is 400 \(ulimit -n\); 50 descriptors are open at start, 64 are kept for database connections and FD_RESERVE=64/,
    );
    expect(() => testConfig('/tmp/x', { EST_PORT: '0', EST_TLS_CERT_PATH: 'a', EST_TLS_KEY_PATH: 'b', EST_TLS_HANDSHAKE_TIMEOUT_MS: '5' })).toThrow(/EST_TLS_HANDSHAKE_TIMEOUT_MS must be an integer from 100/);
    expect(() => testConfig('/tmp/x', { FD_RESERVE: '1' })).toThrow(/FD_RESERVE must be an integer from 16/);
  });

  it('sets the handshake, header, request and keep-alive timeouts and the cap on the EST server', async () => {
    const { t, server } = await startEst({
      HTTP_HEADERS_TIMEOUT_MS: '4000',
      HTTP_REQUEST_TIMEOUT_MS: '9000',
      HTTP_KEEP_ALIVE_TIMEOUT_MS: '3000',
      EST_TLS_HANDSHAKE_TIMEOUT_MS: '2500',
      EST_MAX_CONNECTIONS: '333',
    });
    try {
      expect(server.headersTimeout).toBe(4000);
      expect(server.requestTimeout).toBe(9000);
      expect(server.keepAliveTimeout).toBe(3000);
      expect(server.maxConnections).toBe(333);
      const handshake = Object.getOwnPropertySymbols(server).find((s) => s.description === 'handshake-timeout');
      expect(handshake && (server as unknown as Record<symbol, number>)[handshake]).toBe(2500);
    } finally {
      await t.close();
    }
  });

  it('closes connections beyond EST_MAX_CONNECTIONS at once, and serves again when they go', { timeout: 120_000 }, async () => {
    const { t, server, port, ca } = await startEst({ EST_MAX_CONNECTIONS: '5', EST_TLS_HANDSHAKE_TIMEOUT_MS: '60000' });
    const idle: Slow[] = [];
    try {
      for (let i = 0; i < 5; i++) idle.push(slowClient(port, 'idle', 1_000, 60));
      await Promise.all(idle.map((s) => s.connected));
      await expect.poll(() => new Promise<number>((r) => server.getConnections((_e, n) => r(n))), { timeout: 30_000 }).toBe(5);
      const extra = slowClient(port, 'idle', 1_000, 20);
      expect(await extra.closedByServer).toBe(true);
      expect(typeof (await cacerts(port, ca))).toBe('string'); // refused while the cap is reached
      for (const s of idle) s.socket.destroy();
      await expect.poll(() => new Promise<number>((r) => server.getConnections((_e, n) => r(n))), { timeout: 30_000 }).toBe(0);
      expect(await cacerts(port, ca)).toBe(200);
    } finally {
      for (const s of idle) s.socket.destroy();
      await t.close();
    }
  });

  it('idle, partial-ClientHello, handshaken-idle, slow-header and slow-body connections (100 each) are cut off by the server while EST and the API answer', { timeout: 240_000 }, async () => {
    const { t, port, ca } = await startEst({ HTTP_HEADERS_TIMEOUT_MS: '3000', HTTP_REQUEST_TIMEOUT_MS: '5000', EST_TLS_HANDSHAKE_TIMEOUT_MS: '2000' });
    const apiPort = (await t.service.app.listen({ port: 0, host: '127.0.0.1' }), (t.service.app.server.address() as AddressInfo).port);
    const slow: Slow[] = [];
    try {
      // Without the limits Node waits 120 s for a handshake, 60 s for a head and 300 s for a
      // request: these clients give up by themselves after ~40 s, so only the server's limits
      // can close them first.
      const kinds: SlowKind[] = ['idle', 'client-hello', 'tls-idle', 'header', 'body'];
      for (let i = 0; i < 100; i++) for (const kind of kinds) slow.push(slowClient(port, kind, 1_000, 40, EST_PATHS));
      await Promise.all(slow.map((s) => s.connected));
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push(await cacerts(port, ca), await healthz(apiPort));
      expect(statuses).toEqual(Array(10).fill(200));
      const cutOff = await Promise.all(slow.map((s) => s.closedByServer));
      const held = kinds.map((kind, k) => `${kind}: ${cutOff.filter((c, i) => i % kinds.length === k && !c).length}`);
      expect(held).toEqual(kinds.map((kind) => `${kind}: 0`));
      expect(await cacerts(port, ca)).toBe(200);
    } finally {
      for (const s of slow) s.socket.destroy();
      await t.close();
    }
  });
});

/** One JSON log line of the child's stdout matching `pick`, as soon as it is written. */
function logLine(child: ChildProcess, output: { text: string }, pick: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const scan = () => {
      for (const raw of output.text.split('\n')) {
        if (!raw.startsWith('{')) continue;
        try {
          const line = JSON.parse(raw) as Record<string, unknown>;
          if (pick(line)) return resolve(line);
        } catch {
          // a line still being written
        }
      }
    };
    child.stdout!.on('data', scan);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${output.text.slice(-4000)}`)));
    scan();
  });
}

/**
 * Keeps `count` connections of `kind` open against the port: each one the server closes is
 * replaced (50 ms later, so that the churn does not take both cores), until stop().
 */
function hammer(port: number, kind: SlowKind, count: number) {
  let stopped = false;
  let closedByServer = 0;
  const open = new Set<Slow>();
  const start = () => {
    if (stopped) return;
    const s = slowClient(port, kind, 1_000, 600);
    open.add(s);
    void s.closedByServer.then((byServer) => {
      open.delete(s);
      if (byServer) closedByServer++;
      setTimeout(start, 50);
    });
  };
  for (let i = 0; i < count; i++) start();
  return {
    closedByServer: () => closedByServer,
    stop() {
      stopped = true;
      for (const s of open) s.socket.destroy();
    },
  };
}

describe.runIf(process.platform === 'linux')('EST flood under `prlimit --nofile=256` (serve, Postgres): the rest of the process keeps working', () => {
  let child: ChildProcess | null = null;
  let dropDatabase: (() => Promise<void>) | null = null;
  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    await dropDatabase?.();
  });

  it('300 idle and 100 partial-ClientHello connections to EST: /healthz, new Postgres connections, a CRL publication and EST itself keep working, no EMFILE', { timeout: 300_000 }, async () => {
    const database = await createThrowawayDatabase('certfleet_est_fd');
    dropDatabase = database.drop;
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-est-fd-'));
    const ca = await createDeviceCa({ now: new Date() });
    await writeDeviceCa(ca, join(dataDir, 'pki/device-ca.crt'), join(dataDir, 'pki/device-ca.key'));
    const crlPath = join(dataDir, 'pki/device-crl.pem');
    const tls = await estTlsFiles(ca.certPem, crlPath);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of Object.keys(env)) if (/^(HTTP_|EST_|FD_RESERVE|NODE_ENV|OIDC_|BROKER_)/.test(name)) delete env[name];
    Object.assign(env, {
      DATABASE_URL: database.url,
      CERTFLEET_DATA_DIR: dataDir,
      CERTFLEET_AUTH: 'development',
      HOST: '127.0.0.1',
      PORT: '0',
      EST_PORT: '0',
      EST_HOST: '127.0.0.1',
      EST_TLS_CERT_PATH: tls.cert,
      EST_TLS_KEY_PATH: tls.key,
      // Only the cap protects the process here: no handshake timeout closes the idle ones.
      EST_TLS_HANDSHAKE_TIMEOUT_MS: '120000',
      LOG_LEVEL: 'info',
      KEYGEN_WORKERS: '1',
    });
    const output = { text: '' };
    child = spawn('prlimit', ['--nofile=256:256', '--', process.execPath, BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => void (output.text += d));
    child.stderr!.on('data', (d) => void (output.text += d));
    const started = await logLine(child, output, (l) => l.event === 'started');
    const caps = started.connection_caps as { api: number; est: number; fd_limit: number; fd_reserved: number };
    expect(caps.fd_limit).toBe(256);
    expect(caps.api + caps.est + caps.fd_reserved).toBeLessThanOrEqual(256);
    expect(caps.est).toBeLessThan(300);
    const api = String(started.address);
    const estPort = Number(new URL(String(started.est)).port);

    const token = await cliHere(['token', '--tenant', 'acme', '--role', 'tenant-admin'], env); // in this process: serve is the one under test
    expect(token.status, token.stderr).toBe(0);
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${api}/api/v1/customer${path}`, {
        method,
        headers: { authorization: `Bearer ${token.stdout.trim()}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as Record<string, any> };
    };
    expect((await call('POST', '/devices', { device_id: 'FD-1' })).status).toBe(201);
    const issued = await call('POST', '/devices/FD-1/certificates/generate', { key_type: 'ec-p256' });
    expect(issued.status).toBe(201);
    const crlBefore = Number((await call('GET', '/crl/status')).json.crl_number);

    const idle = hammer(estPort, 'idle', 300);
    const hello = hammer(estPort, 'client-hello', 100);
    try {
      // The cap is reached: the server has been closing what is beyond it.
      await expect.poll(() => idle.closedByServer() + hello.closedByServer(), { timeout: 120_000, interval: 100 }).toBeGreaterThanOrEqual(400 - caps.est);

      // The API answers on new connections.
      for (let i = 0; i < 5; i++) expect(await healthz(Number(new URL(api).port))).toBe(200);
      // The pool opens new Postgres connections: more requests at once than it had open.
      const lists = await Promise.all(Array.from({ length: 12 }, () => call('GET', '/devices')));
      expect(lists.map((r) => r.status)).toEqual(Array(12).fill(200));
      expect((await fetch(`${api}/readyz`)).status).toBe(200);
      // A revocation publishes a new CRL: stored, written to CRL_OUTPUT_PATH.
      expect((await call('POST', `/certificates/${issued.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
      await expect.poll(async () => Number((await call('GET', '/crl/status')).json.crl_number), { timeout: 60_000, interval: 100 }).toBeGreaterThan(crlBefore);
      const onDisk = spawnSync('openssl', ['crl', '-in', crlPath, '-noout', '-text'], { encoding: 'utf8' });
      expect(onDisk.status, onDisk.stderr).toBe(0);
      expect(onDisk.stdout.replace(/[\s:]/g, '').toUpperCase()).toContain(String(issued.json.certificate.serial_number).replace(/[\s:]/g, '').toUpperCase());
    } finally {
      idle.stop();
      hello.stop();
    }
    // EST itself serves again once the flood is gone.
    await expect.poll(() => cacerts(estPort, tls.ca), { timeout: 60_000, interval: 100 }).toBe(200);
    expect(output.text).not.toMatch(/EMFILE|too many open files/i);
  });
});
