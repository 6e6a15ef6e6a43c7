/**
 * `certfleet api` on several processes (API_PROCESSES, src/cli/api-cluster.ts): what each process
 * gets (its share of the per-tenant issuance limit and of the RSA key threads, MQTT renewal in the
 * first only), and on real Postgres: the processes share the port and all issue, one that dies is
 * replaced, SIGTERM stops them all; without DATABASE_URL (PGlite: one process) the start is refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configForApiProcess } from '../src/cli/api-cluster.ts';
import { loadConfig } from '../src/config.ts';
import { cliHere } from './support/cli-here.ts';
import { createThrowawayDatabase } from './support/databases.ts';
import { scaled } from './support/timeouts.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
// init-ca, migrate, token and the refused start run in this process (each spawn costs ~1 s of CPU); `api` itself runs as processes.
const cli = cliHere;

/** The pids whose parent is `pid` (/proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** One request on its own connection (the cluster hands each connection to the next process). */
function post(url: string, token: string, body: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(url, { method: 'POST', agent: false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

describe('API_PROCESSES: what each process gets', () => {
  it('shares the issuance limit and the RSA key threads out, and gives MQTT renewal to the first process only', () => {
    const config = loadConfig({ DATABASE_URL: 'postgres://x@127.0.0.1/x', API_PROCESSES: '3', ISSUANCE_RATE_PER_MINUTE: '600', ISSUANCE_BURST: '100', MQTT_RENEWAL: 'false' });
    expect(config.apiProcesses).toBe(3);
    const first = configForApiProcess({ ...config, mqttRenewal: true }, 0, 3, {});
    const second = configForApiProcess({ ...config, mqttRenewal: true }, 1, 3, {});
    expect([first.issuanceRatePerMinute, first.issuanceBurst]).toEqual([200, 34]);
    expect([first.mqttRenewal, second.mqttRenewal]).toEqual([true, false]);
    expect(first.keygenWorkers).toBeGreaterThanOrEqual(1);
    // No limit stays no limit; an explicit KEYGEN_WORKERS is each process's own.
    expect(configForApiProcess({ ...config, issuanceRatePerMinute: 0 }, 0, 3, {}).issuanceRatePerMinute).toBe(0);
    expect(configForApiProcess({ ...config, keygenWorkers: 4 }, 0, 3, { KEYGEN_WORKERS: '4' }).keygenWorkers).toBe(4);
  });
});

describe('certfleet api with API_PROCESSES=2 (real Postgres)', () => {
  const children = new Set<ChildProcess>();
  const cleanups: Array<() => Promise<void>> = [];
  /** `certfleet api` as a process, its stdout and stderr kept together. */
  const startApi = (env: Record<string, string>) => {
    const child = spawn(process.execPath, [BIN, 'api'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    return { child, output: () => out };
  };
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const c of cleanups) await c();
  }, scaled(60_000));

  it('refuses to start without DATABASE_URL (the embedded PGlite allows one process)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-api-processes-'));
    const r = await cli(['api'], { CERTFLEET_DATA_DIR: dataDir, API_PROCESSES: '2', PORT: '0', DATABASE_URL: '', CERTFLEET_AUTH: 'development' });
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/API_PROCESSES > 1 needs DATABASE_URL/);
  }, scaled(60_000));

  it('a process that cannot start ends the whole start with exit code 1 and the reason, never a hang', async () => {
    const db = await createThrowawayDatabase('certfleet_api_processes');
    cleanups.push(() => db.drop());
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-api-processes-'));
    // A key file another start left half-written (or an operator's typo): every API process refuses it.
    writeFileSync(join(dataDir, 'webhook-secret.key'), 'short\n', { mode: 0o600 });
    const env = { CERTFLEET_DATA_DIR: dataDir, DATABASE_URL: db.url, CERTFLEET_AUTH: 'development', PORT: '0', API_PROCESSES: '2', ISSUANCE_RATE_PER_MINUTE: '0' };
    expect((await cli(['migrate'], env)).status).toBe(0);
    const { child, output } = startApi(env);
    // Before the fix the failed process kept its database pool and its channel to the primary open:
    // it never exited, so the primary waited for it forever (a CI run hung there).
    const code = await Promise.race([
      new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))),
      new Promise<string>((resolve) => setTimeout(() => resolve('still running'), scaled(45_000))),
    ]);
    expect(code, output()).toBe(1);
    expect(output()).toContain('must be 32 bytes');
    expect(output()).toContain('api_process_failed');
  }, scaled(120_000));

  it('runs the processes on one port, each issuing; replaces one that dies; SIGTERM stops them all', async () => {
    const db = await createThrowawayDatabase('certfleet_api_processes');
    cleanups.push(() => db.drop());
    const dataDir = mkdtempSync(join(tmpdir(), 'certfleet-api-processes-'));
    const initCa = await cli(['init-ca', '--out', join(dataDir, 'ca')], {});
    expect(initCa.status, initCa.stderr).toBe(0);
    const env = {
      CERTFLEET_DATA_DIR: dataDir,
      DATABASE_URL: db.url,
      CERTFLEET_AUTH: 'development',
      DEVICE_CA_CERT_PATH: join(dataDir, 'ca', 'device-ca.crt'),
      DEVICE_CA_KEY_PATH: join(dataDir, 'ca', 'device-ca.key'),
      PORT: '0',
      LOG_LEVEL: 'info',
      API_PROCESSES: '2',
      ISSUANCE_RATE_PER_MINUTE: '0',
    };
    // Migrated before the processes start, so the test waits on nothing but the start itself.
    expect((await cli(['migrate'], env)).status).toBe(0);
    const { child, output } = startApi(env);
    const waitFor = async (what: string, ok: () => boolean) => {
      const until = Date.now() + scaled(120_000);
      while (!ok()) {
        if (child.exitCode !== null || Date.now() > until) throw new Error(`${what}: ${output()}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const started = () => output().split('\n').filter((l) => l.includes('"event":"started"'));
    await waitFor('the primary reports both processes listening', () => started().some((l) => l.includes('"api_processes":2')));
    const address = /"address":"(http:\/\/[^"]+)"/.exec(output())?.[1];
    expect(address).toBeTruthy();
    // Both processes adopt the configured CA at once: the second insert of the same record must not
    // end a process ("duplicate key … certificate_authorities_pkey" did, and the primary replaced it).
    expect(output()).not.toMatch(/api_process_exited|duplicate key/);
    const workers = childrenOf(child.pid!);
    expect(workers, output()).toHaveLength(2);

    const token = (await cli(['token', '--tenant', 'acme', '--ttl', '1h'], env)).stdout.trim();
    expect((await post(`${address}/api/v1/customer/devices`, token, { device_id: 'D1' })).status).toBe(201);
    const issued = await Promise.all(Array.from({ length: 6 }, () => post(`${address}/api/v1/customer/devices/D1/certificates/generate`, token, { key_type: 'ec-p256', validity_days: 30 })));
    expect(issued.map((r) => r.status)).toEqual(Array(6).fill(201));
    expect(new Set(issued.map((r) => r.json.certificate.id)).size).toBe(6);
    expect(issued.every((r) => r.json.ca_cert_pem === readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8'))).toBe(true);

    // One process dies: the primary starts another, and the service answers meanwhile and after.
    process.kill(workers[0]!, 'SIGKILL');
    await waitFor('a replacement process', () => output().includes('"event":"api_process_exited"') && childrenOf(child.pid!).length === 2 && !childrenOf(child.pid!).includes(workers[0]!));
    const replacement = childrenOf(child.pid!).find((p) => !workers.includes(p))!;
    await waitFor('the replacement listening', () => output().split('\n').some((l) => l.includes('certfleet listening') && l.includes(`"pid":${replacement}`)));
    const after = await Promise.all(Array.from({ length: 4 }, () => post(`${address}/api/v1/customer/devices/D1/certificates/generate`, token, { key_type: 'ec-p256', validity_days: 30 })));
    expect(after.map((r) => r.status)).toEqual(Array(4).fill(201));

    const current = childrenOf(child.pid!);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(current.filter((pid) => readdirSync('/proc').includes(String(pid)))).toEqual([]);
  }, scaled(300_000));
});
