import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS, HOUR_MS, createManualClock } from '../src/domain/clock.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { run as runCommand } from './support/openssl.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: Record<string, any>[];
}

/** The line a long-running worker prints once its scheduler has started (its first attempts are under way). */
const READY = /^certfleet worker (\S+): /m;

/**
 * `certfleet worker ...` as a child process on the test database. `stopWhenReady`: SIGTERM a
 * long-running one as soon as it printed its readiness line; it then finishes the attempts it
 * started (stop() awaits them), so each replica's first attempt at every task is in its output.
 */
function worker(args: string[], env: Record<string, string>, stopWhenReady = false): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'worker', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
      if (stopWhenReady && !stopping && READY.test(stderr)) {
        stopping = true;
        child.kill('SIGTERM');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const lines = stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l));
      resolve({ code, stdout, stderr, lines });
    });
  });
}

describe('three worker processes on one Postgres', () => {
  let database: TestDatabase;
  let t: TestService;
  let receiver: WebhookReceiver;
  let env: Record<string, string>;
  let secret: string;
  const rotatedOld: { id: number; serial: string }[] = [];

  const query = async (sql: string, params: unknown[] = []) => (await database.db.asOperator((tx) => tx.query<Record<string, any>>(sql, params))).rows;

  beforeAll(async () => {
    database = await createTestDatabase('pg');
    // its dev CA is the Device CA of the worker processes too, created a month back so certificates can be issued "6 days ago"
    t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' }, clock: createManualClock(new Date(Date.now() - 30 * DAY_MS)) });
    receiver = await startWebhookReceiver();
    env = {
      DATABASE_URL: database.url!,
      CERTFLEET_AUTH: 'development', // development tokens on Postgres, explicitly
      CERTFLEET_DATA_DIR: t.dataDir,
      DEVICE_CA_CERT_PATH: t.config.caCertPath,
      DEVICE_CA_KEY_PATH: t.config.caKeyPath,
      CRL_OUTPUT_PATH: join(t.dataDir, 'pki', 'device-crl.pem'),
      LOG_LEVEL: 'debug', // every task line, also of runs that changed nothing
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true', // the receiver is on 127.0.0.1
      // the webhook secrets were encrypted with the key file in the shared data dir
    };
    secret = (await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/hook') })).json.secret;
    const now = Date.now();
    const issue = async (device: string, validityDays: number) => {
      await t.call('acme', 'POST', '/customer/devices', { device_id: device });
      const res = await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: validityDays });
      expect(res.status).toBe(201);
      return res.json.certificate as { id: number; serial_number: string };
    };
    // 24 certificates within the 30-day window (all three severities), 8 beyond it
    t.clock.set(new Date(now));
    for (let i = 0; i < 24; i++) await issue(`EXP-${i}`, 1 + i);
    for (let i = 0; i < 8; i++) await issue(`OK-${i}`, 200);
    // 6 devices whose only certificate expired yesterday (issued 6 days ago for 5 days)
    t.clock.set(new Date(now - 6 * DAY_MS));
    for (let i = 0; i < 6; i++) await issue(`GONE-${i}`, 5);
    // 10 rotations whose grace period ended an hour ago
    t.clock.set(new Date(now - 3 * HOUR_MS));
    for (let i = 0; i < 10; i++) {
      const old = await issue(`ROT-${i}`, 365);
      rotatedOld.push({ id: old.id, serial: old.serial_number });
      const res = await t.call('acme', 'POST', `/customer/devices/ROT-${i}/certificates/rotate`, { key_type: 'ec-p256', revoke_old_after_hours: 2 });
      expect(res.status).toBe(201);
    }
    t.clock.set(new Date(now));
    // The CRL the service published at its start (clock a month back) is past its nextUpdate: a
    // worker's freshness check that ran before another worker's CRL task would rightly raise, then
    // close, CRL_STALE (under load it did). Start the workers from a fresh CRL.
    await t.service.crl.publisher!.publishNow();
    // From here on only the worker processes touch the database (the service would publish CRLs too).
    await t.close();
  });
  afterAll(async () => {
    await receiver?.close();
    await database?.close();
  });

  it('running every task concurrently (worker --once ×3): no duplicate alert, no double revocation, strictly increasing CRL numbers, each event delivered once', async () => {
    const before = BigInt((await query('SELECT crl_number FROM crl_state'))[0].crl_number);
    const runs = await Promise.all([1, 2, 3].map(() => worker(['--once', '--json'], env)));
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    // every task ran or was skipped because another process was running it at that moment; none failed
    // the --json summary line (other log lines may follow it while the process shuts down)
    const summaries = runs.map((r) => r.lines.find((l) => Array.isArray(l.tasks)));
    expect(summaries.every(Boolean), JSON.stringify(runs.map((r) => r.lines.slice(-3)))).toBe(true);
    const reports = summaries.flatMap((l) => l!.tasks as { task: string; status: string }[]);
    expect(reports.filter((r) => r.status === 'failed')).toEqual([]);
    for (const task of ['scheduled-revocations', 'crl', 'mark-expired', 'expiry-alerts', 'crl-freshness', 'notifications']) {
      expect(reports.filter((r) => r.task === task && r.status === 'ok').length, task).toBeGreaterThanOrEqual(1);
    }

    // CRLs: every publication of the three processes got its own number, none reused
    const published = runs.flatMap((r) => r.lines.filter((l) => l.event === 'crl_published').map((l) => BigInt(l.crl_number)));
    const stored = BigInt((await query('SELECT crl_number FROM crl_state'))[0].crl_number);
    expect(published.length).toBeGreaterThanOrEqual(1);
    // (numbered from thisUpdate in ms, or one above the previous: strictly increasing, not consecutive)
    const sorted = [...published].sort((a, b) => (a < b ? -1 : 1));
    expect(new Set(sorted).size).toBe(sorted.length);
    expect(sorted[0]).toBeGreaterThan(before);
    expect(sorted.at(-1)).toBe(stored);
    // the shared CRL file holds the latest one, and it lists the certificates the schedule revoked
    const text = runCommand('openssl', ['crl', '-noout', '-text'], readFileSync(env.CRL_OUTPUT_PATH, 'utf8')).out;
    expect(text).toMatch(new RegExp(`X509v3 CRL Number:\\s*\\n\\s*${stored}\\b`));
    for (const { serial } of rotatedOld) expect(text.toUpperCase()).toContain(`SERIAL NUMBER: ${serial.toUpperCase().replace(/^0+/, '')}`);

    const alerts = await query('SELECT alert_type, fingerprint, status, severity FROM fleet_alert ORDER BY id');
    const open = alerts.filter((a) => a.status !== 'CLOSED');
    expect(alerts.length, JSON.stringify(alerts.filter((a) => a.status === 'CLOSED'))).toBe(open.length); // nothing opened twice and closed
    expect(new Set(alerts.map((a) => `${a.alert_type}|${a.fingerprint}`)).size).toBe(alerts.length);
    expect(alerts.filter((a) => a.alert_type === 'CERT_EXPIRING')).toHaveLength(24);
    expect(alerts.filter((a) => a.alert_type === 'CERT_EXPIRED')).toHaveLength(6);
    expect(new Set(alerts.filter((a) => a.alert_type === 'CERT_EXPIRING').map((a) => a.severity))).toEqual(new Set([3, 4, 5]));

    const revoked = await query(`SELECT target_id, count(*)::int AS n FROM audit_events WHERE action = 'certificate.revoked' GROUP BY target_id`);
    expect(revoked.map((r) => Number(r.target_id)).sort((a, b) => a - b)).toEqual(rotatedOld.map((c) => c.id));
    expect(revoked.every((r) => r.n === 1)).toBe(true);
    const expired = await query(`SELECT target_id, count(*)::int AS n FROM audit_events WHERE action = 'certificate.expired' GROUP BY target_id`);
    expect(expired).toHaveLength(6);
    expect(expired.every((r) => r.n === 1)).toBe(true);

    // 30 alert.opened events, each delivered exactly once, all signed
    const outbox = await query(`SELECT status, count(*)::int AS n FROM notification_outbox GROUP BY status`);
    expect(outbox).toEqual([{ status: 'DELIVERED', n: 30 }]);
    const received = receiver.verified('/hook', secret);
    expect(received).toHaveLength(30);
    expect(new Set(received.map((r) => r.headers['x-certfleet-delivery'])).size).toBe(30);
  });

  it('long-running workers: each task runs once per period across the three processes', async () => {
    await query('DELETE FROM worker_leases');
    const runs = await Promise.all([1, 2, 3].map(() => worker([], env, true)));
    for (const run of runs) expect(run.code, `${run.code} ${run.stderr} ${run.stdout}`).toBe(0);
    const holders = runs.map((r) => READY.exec(r.stderr)?.[1]);
    expect(new Set(holders).size, JSON.stringify(holders)).toBe(3); // three replicas, each started
    const lines = runs.flatMap((r) => r.lines.filter((l) => l.msg === 'worker task'));
    const tasks = ['scheduled-revocations', 'crl', 'mark-expired', 'expiry-alerts', 'crl-freshness', 'notifications'];
    for (const task of tasks) {
      expect(lines.filter((l) => l.task === task), task).toHaveLength(1);
      expect(lines.find((l) => l.task === task)!.status).toBe('ok');
    }
    const leases = await query('SELECT name, runs_total, holder FROM worker_leases ORDER BY name');
    for (const task of tasks) expect(leases.find((l) => l.name === task)).toMatchObject({ runs_total: 1 });
    // each task was run by the replica that won its lease, one of the three, not done three times
    for (const task of tasks) {
      const ran = lines.find((l) => l.task === task)!;
      expect(holders).toContain(ran.holder);
      expect(leases.find((l) => l.name === task)!.holder, task).toBe(ran.holder);
    }
  });

  it('worker --once exits 1 when a task fails, and the other tasks still run', async () => {
    const asOwner = (sql: string) => database.driver.transaction((tx) => tx.exec(sql)); // the operator role cannot change grants
    await asOwner('REVOKE SELECT, UPDATE ON certificate_rotations FROM certfleet_operator');
    try {
      const run = await worker(['--once'], env);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/failed: scheduled-revocations/);
      const byTask = Object.fromEntries(run.lines.filter((l) => l.msg === 'worker task').map((l) => [l.task, l]));
      expect(byTask['scheduled-revocations']).toMatchObject({ status: 'failed', level: 'error' });
      expect(byTask['scheduled-revocations'].error).toMatch(/permission denied/);
      for (const task of ['crl', 'mark-expired', 'expiry-alerts', 'crl-freshness', 'notifications']) expect(byTask[task]?.status, task).toBe('ok');
    } finally {
      await asOwner('GRANT SELECT, UPDATE ON certificate_rotations TO certfleet_operator');
    }
    expect((await worker(['--once'], env)).code).toBe(0);
  });
});
