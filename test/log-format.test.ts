/**
 * One log format: `certfleet serve` with a real Mosquitto to reload, driven through a
 * revocation; every stdout line must be one pino JSON object with the same keys, no duplicate
 * key (the SIGHUP line used to carry two `pid`), at the LOG_LEVEL asked for.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { cliHere } from './support/cli-here.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { parseJsonRejectingDuplicateKeys } from './support/strict-json.ts';
import { scaled } from './support/timeouts.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js'); // the CLI from the sources, as bin/certfleet.js runs dist/
const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

interface Serve {
  child: ChildProcess;
  lines: () => string[];
  /** Resolves with the first parsed line that matches. */
  waitFor(match: (line: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
}

function serve(env: Record<string, string>): Serve {
  const child = spawn(process.execPath, [BIN, 'serve'], { env: { ...process.env, PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('utf8');
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const lines = () => out.split('\n').filter((l) => l !== '');
  const parsed = () => lines().flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
  return {
    child,
    lines,
    waitFor: (match, what) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} line within 240 s; stdout:\n${out}\nstderr:\n${err}`)), scaled(240_000));
        const check = () => {
          const found = parsed().find(match);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          } else if (child.exitCode !== null) {
            clearTimeout(timer);
            reject(new Error(`serve exited (${child.exitCode}) before a ${what} line; stdout:\n${out}\nstderr:\n${err}`));
          } else waiters.push(check);
        };
        child.once('exit', check);
        check();
      }),
  };
}

const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    // A process ended by a signal keeps exitCode null (serve installs its SIGTERM handler after
    // its first worker ticks: a SIGTERM before that ends it at once) and emits no second 'exit':
    // waiting for one hung the file's afterAll until the hook time-out (8 to 12 minutes).
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });

describe('log format of certfleet serve', () => {
  const dirs: string[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('every stdout line through a revocation and broker reload is one pino JSON object with the same keys and no duplicate', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'certfleet-logs-'));
    dirs.push(tmp);
    chmodSync(tmp, 0o755); // the broker runs as user mosquitto when started as root
    mkdirSync(join(tmp, 'crl'), { mode: 0o755 });
    const dataDir = join(tmp, 'data');
    const crlPath = join(tmp, 'crl', 'device-crl.pem');
    const brokerDir = join(tmp, 'broker');
    const pidFile = join(brokerDir, 'run', 'mosquitto.pid');
    const env = { CERTFLEET_DATA_DIR: dataDir, CRL_OUTPUT_PATH: crlPath, BROKER_PID_FILE: pidFile, LOG_LEVEL: 'info' };

    const first = serve(env);
    cleanups.push(() => stop(first.child));
    const banner = await first.waitFor((l) => l.event === 'started', 'start banner');
    expect(banner).toMatchObject({ level: 'info', broker_reload_configured: true, session_kicking_configured: false });
    expect(String(banner.broker_reload)).toContain(pidFile);
    expect(String(banner.msg)).toMatch(/^certfleet listening on http:\/\//);

    // The broker, reading the CRL the service has just published, with the service's Device CA.
    const deviceCaCertPem = await readFile(join(dataDir, 'pki', 'device-ca.crt'), 'utf8');
    await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem, crlPath, pidFile });
    const broker: RunningMosquitto = await startMosquitto({ configDir: brokerDir });
    cleanups.push(() => broker.stop());

    const token = (await cliHere(['token', '--tenant', 'acme', '--role', 'tenant-admin', '--ttl', '10m'], { CERTFLEET_DATA_DIR: dataDir })).stdout.trim(); // in this process: serve is the one whose output is checked
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${banner.address}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as { certificate?: { id: number } } };
    };
    expect((await call('POST', '/customer/devices', { device_id: 'LOG-1' })).status).toBe(201);
    const issued = await call('POST', '/customer/devices/LOG-1/certificates/generate', { key_type: 'ec-p256' });
    expect(issued.status).toBe(201);
    const revoked = await call('POST', `/customer/certificates/${issued.json.certificate!.id}/revoke`, { reason: 'keyCompromise' });
    expect(revoked.status).toBe(200);

    // The CRL with the revocation is published and the broker told to reload.
    const sighup = await first.waitFor((l) => l.msg === 'sent SIGHUP to the broker', 'SIGHUP');
    expect(sighup.broker_pid).toBe(broker.pid);
    await stop(first.child);

    const lines = first.lines();
    expect(lines.length).toBeGreaterThan(3);
    const keysOfFirst = ['level', 'time', 'pid', 'hostname', 'msg'];
    for (const line of lines) {
      const entry = parseJsonRejectingDuplicateKeys(line) as Record<string, unknown>; // throws on a duplicate key
      expect(entry, line).toBeTypeOf('object');
      for (const key of keysOfFirst) expect(entry, line).toHaveProperty(key);
      expect(LEVELS.has(String(entry.level)), line).toBe(true);
      expect(entry.level, line).not.toBe('debug'); // LOG_LEVEL=info
      expect(typeof entry.time, line).toBe('number');
      expect(entry.pid, line).toBe(first.child.pid);
      expect(typeof entry.msg, line).toBe('string');
    }
  }, scaled(600_000));

  it('the duplicate-key check itself refuses a line with two pid', () => {
    expect(() => parseJsonRejectingDuplicateKeys('{"level":"info","pid":1,"msg":"x","pid":2}')).toThrow(/duplicate key "pid"/);
    expect(parseJsonRejectingDuplicateKeys('{"a":[1,{"b":"c\\"d"}],"e":null}')).toEqual({ a: [1, { b: 'c"d' }], e: null });
  });

  it('LOG_LEVEL=debug shows the periodic lines that changed nothing; LOG_LEVEL=warn hides info', async () => {
    for (const level of ['debug', 'warn'] as const) {
      const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-logs-'));
      dirs.push(dataDir);
      const port = await freePort();
      const s = serve({ CERTFLEET_DATA_DIR: dataDir, LOG_LEVEL: level, PORT: String(port) });
      cleanups.push(() => stop(s.child));
      if (level === 'debug') {
        // At start every worker task runs once; on an empty fleet most find nothing to do.
        const idle = await s.waitFor((l) => l.msg === 'worker task' && l.task === 'mark-expired', 'mark-expired task');
        expect(idle.level).toBe('debug');
      } else {
        // Ready when /readyz answers (no start line to wait for at warn); nothing below warn may be written.
        const deadline = Date.now() + 240_000;
        let ready = false;
        while (!ready && Date.now() < deadline && s.child.exitCode === null) {
          ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false);
          if (!ready) await new Promise((r) => setTimeout(r, 200));
        }
        expect(ready, 'serve did not get ready').toBe(true);
      }
      await stop(s.child);
      for (const line of s.lines()) {
        const entry = parseJsonRejectingDuplicateKeys(line) as Record<string, unknown>;
        if (level === 'warn') expect(['warn', 'error', 'fatal'], line).toContain(entry.level);
      }
    }
  }, scaled(900_000));
});
