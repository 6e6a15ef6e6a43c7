/**
 * Disaster recovery never un-revokes a certificate (README "Backup and restore").
 *
 * Postgres and a real Mosquitto: certificates issued, one revoked, `pg_dump` taken, more revoked
 * (one of a certificate issued after the dump), published; the dump is restored into a fresh
 * database and certfleet starts on it with the same broker CRL file and a clock behind the last
 * CRL's thisUpdate. The next CRL lists every revocation, its number is above the last one, the
 * re-marked certificates are REVOKED in the API with the CRL's date and reason, each is audited,
 * one CRL_RECONCILED alert says how many; the broker still refuses every revoked certificate. A
 * second start changes nothing (idempotent).
 *
 * PGlite: the same with the restore simulated (revocations deleted, the stored CRL wound back).
 * Bad input: CRL_RECONCILE_PATH naming garbage, another CA's CRL, a truncated CRL or no file: the
 * start fails with a message naming the file and why (serve exits 1), nothing is published.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../src/domain/clock.ts';
import { createLogger } from '../src/support/logger.ts';
import { crlEntries } from '../src/crl/crl-entries.ts';
import { crlDerToPem, crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { createDatabase } from '../src/storage/database.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { readCrlInfo } from '../src/storage/repos/crl-repo.ts';
import { createTestDatabase, createThrowawayDatabase, type TestDatabase } from './support/databases.ts';
import { brokerTestFixture, brokerConfigHere } from './support/broker-fixture.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const TENANT = 'acme';
const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** pg_dump and pg_restore of the installed Postgres (Debian keeps them under /usr/lib/postgresql/<version>/bin). */
function pgTool(name: 'pg_dump' | 'pg_restore'): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', name))) return join(root, v, 'bin', name);
  return name;
}

function pgRun(tool: 'pg_dump' | 'pg_restore', args: string[]) {
  const res = spawnSync(pgTool(tool), args, { encoding: 'utf8', timeout: 120_000 });
  if (res.status !== 0) throw new Error(`${tool} failed (${res.status}): ${res.stderr}`);
}

interface DeviceCert {
  id: number;
  serial: string;
  cert: string;
  key: string;
}

async function issue(t: TestService, dir: string, deviceId: string): Promise<DeviceCert> {
  expect([201, 409]).toContain((await t.call(TENANT, 'POST', '/customer/devices', { device_id: deviceId })).status);
  const res = await t.call(TENANT, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  const cert = join(dir, `${deviceId}.crt`);
  const key = join(dir, `${deviceId}.key`);
  writeFileSync(cert, res.json.cert_pem);
  writeFileSync(key, res.json.private_key_pem, { mode: 0o600 });
  return { id: res.json.certificate.id, serial: res.json.certificate.serial_number, cert, key };
}

async function revoke(t: TestService, c: DeviceCert, reason: string) {
  const res = await t.call(TENANT, 'POST', `/customer/certificates/${c.id}/revoke`, { reason });
  expect(res.status, res.body).toBe(200);
  await t.service.crl.publisher!.idle();
}

/** The serials (lowercase hex) and reasons a CRL file lists, and its number. */
function fileCrl(path: string, caCertPath: string) {
  const der = crlPemToDer(readFileSync(path, 'latin1'));
  const entries = new Map([...crlEntries(der)].map((e) => [e.serialHex, e]));
  return { der, entries, number: verifyCrl(der, { caPublicKey: new X509Certificate(readFileSync(caCertPath)).publicKey, now: new Date(0) }).crlNumber };
}

/** The same for the CRL served at /pki/crl (DER): its entries carry their reasons, the broker file's none. */
async function servedCrl(t: TestService, caCertPath: string) {
  const der = (await t.service.app.inject({ method: 'GET', url: '/pki/crl' })).rawPayload;
  const entries = new Map([...crlEntries(der)].map((e) => [e.serialHex, e]));
  return { der, entries, number: verifyCrl(der, { caPublicKey: new X509Certificate(readFileSync(caCertPath)).publicKey, now: new Date(0) }).crlNumber };
}

async function storedCrl(database: { db: TestDatabase['db'] }, issuerKeyId: string) {
  return (await database.db.asOperator((tx) => readCrlInfo(tx, issuerKeyId)))!;
}

describe('restore of a pg_dump taken before some revocations (Postgres, real Mosquitto)', () => {
  let tmp: string;
  let database: TestDatabase;
  let env: Record<string, string>;
  let broker: RunningMosquitto;
  let port: number;
  let combinedCa: string;
  let t: TestService | null = null;
  let restored: { url: string; drop(): Promise<void>; storage: { db: ReturnType<typeof createDatabase>; driver: ReturnType<typeof createPgDriver>; close(): Promise<void> } } | null = null;
  const certs: Record<string, DeviceCert> = {};
  const logs: string[] = [];

  /** One connection attempt: accepted, refused as revoked (TLS alert), or another error. */
  async function probe(c: DeviceCert): Promise<string> {
    try {
      const client = await mqtt.connectAsync(
        `mqtts://localhost:${port}`,
        { ...tlsOptions({ port, cafile: combinedCa, cert: c.cert, key: c.key }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 3000 },
        false,
      );
      await client.endAsync(true);
      return 'accepted';
    } catch (error) {
      return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
    }
  }

  async function expectBroker(c: DeviceCert, outcome: 'accepted' | 'revoked') {
    const until = Date.now() + scaled(20_000);
    let last = '';
    while ((last = await probe(c)) !== outcome) {
      if (Date.now() > until) throw new Error(`certificate ${c.serial}: ${last}, expected ${outcome}`);
      await sleep(50);
    }
  }

  beforeAll(async () => {
    ({ tmp, database, env } = await brokerTestFixture('dr'));
    port = await freePort();
    const config = await brokerConfigHere(env, join(tmp, 'broker'), ['--port', String(port), '--no-kick']);
    combinedCa = config.files.combinedCa;
    broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
    env = { ...env, ...config.env };
  }, scaled(90_000));

  afterAll(async () => {
    await t?.close();
    await broker?.stop();
    await restored?.storage.close();
    await restored?.drop();
    await database?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, scaled(60_000));

  it('the CRL after the restore lists every revocation, numbered above the last; the broker refuses them all', async () => {
    t = await startTestService(database, { dataDir: join(tmp, 'data'), env });
    const issuerKeyId = t.service.crl.issuerKeyId!;
    const dir = join(tmp, 'certs');
    for (const name of ['before', 'lost-1', 'lost-2', 'valid']) certs[name] = await issue(t, dir, `DEV-${name}`);
    await revoke(t, certs.before, 'keyCompromise');

    // Last night's backup.
    const dump = join(tmp, 'certfleet.dump');
    pgRun('pg_dump', ['--format=custom', '--file', dump, database.url!]);

    // Revocations after the backup, one of a certificate the backup does not know at all.
    certs.unknown = await issue(t, dir, 'DEV-unknown');
    await revoke(t, certs['lost-1'], 'keyCompromise');
    await revoke(t, certs['lost-2'], 'cessationOfOperation');
    await revoke(t, certs.unknown, 'superseded');
    for (const name of ['before', 'lost-1', 'lost-2', 'unknown']) await expectBroker(certs[name], 'revoked');
    await expectBroker(certs.valid, 'accepted');
    const last = await storedCrl(database, issuerKeyId);
    const lastThisUpdate = last.thisUpdate!;
    expect(fileCrl(env.CRL_OUTPUT_PATH, env.DEVICE_CA_CERT_PATH).number).toBe(last.crlNumber);
    await t.close();
    t = null;

    // The restore: a fresh database from the dump; certfleet starts on it, same broker file, and a clock behind.
    const fresh = await createThrowawayDatabase('certfleet_restore');
    pgRun('pg_restore', ['--exit-on-error', '--no-owner', '--dbname', fresh.url, dump]);
    const driver = createPgDriver(fresh.url);
    restored = { ...fresh, storage: { db: createDatabase(driver), driver, close: () => driver.close() } };
    const restoredDb = { db: restored.storage.db };
    const before = await storedCrl(restoredDb, issuerKeyId);
    expect(before.crlNumber).toBeLessThan(last.crlNumber); // the backup's stored CRL is older
    const lostBefore = await t_certificateStatus(restoredDb, certs['lost-1'].id);
    expect(lostBefore).toBe('ACTIVE'); // the backup un-revoked it

    // thisUpdate alone would number the next CRL at or below the last one: only the reconciled floor keeps it above.
    const clock = createManualClock(new Date(lastThisUpdate.getTime()));
    // Two replicas start at once, each with its own connections (and its own CRL file): they reconcile one after the other, once.
    const driver2 = createPgDriver(fresh.url);
    const storage2 = { db: createDatabase(driver2), driver: driver2, close: () => driver2.close() };
    const otherFile = join(tmp, 'crl', 'replica-2.pem');
    const [first, second] = await Promise.all([
      startTestService({ ...database, db: restored.storage.db, driver, storage: restored.storage, url: fresh.url } as TestDatabase, {
        dataDir: join(tmp, 'data'),
        env,
        clock,
        overrides: { logger: createLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } }) },
      }),
      startTestService({ ...database, db: storage2.db, driver: driver2, storage: storage2, url: fresh.url } as TestDatabase, {
        dataDir: join(tmp, 'data-2'),
        env: { ...env, CRL_OUTPUT_PATH: otherFile, BROKER_PID_FILE: '' },
        clock,
      }),
    ]);
    t = first;
    await second.service.crl.publisher!.idle();
    await second.close();
    await storage2.close();
    await t.service.crl.publisher!.idle();
    if (process.env.SHOW_LOGS) console.log(logs.join(''));

    // The next CRL: every revocation, numbered above the last one although the clock is behind it.
    const now = await storedCrl(restoredDb, issuerKeyId);
    expect(now.crlNumber).toBeGreaterThan(last.crlNumber);
    const onFile = fileCrl(env.CRL_OUTPUT_PATH, env.DEVICE_CA_CERT_PATH);
    expect(onFile.number).toBe(now.crlNumber);
    for (const name of ['before', 'lost-1', 'lost-2', 'unknown']) expect(onFile.entries.has(certs[name].serial), name).toBe(true);
    expect(onFile.entries.has(certs.valid.serial)).toBe(false);
    // The broker's file lists no reasons (brokers never read them): the revocations it alone kept are
    // restored with reason unspecified (README "Backup and restore"; the served CRL, handed over in
    // CRL_RECONCILE_PATH, restores the reasons too: the PGlite case below).
    for (const name of ['before', 'lost-1', 'lost-2', 'unknown']) expect(onFile.entries.get(certs[name].serial)!.reason, name).toBe('unspecified');
    const served = await servedCrl(t, env.DEVICE_CA_CERT_PATH);
    expect(served.number).toBe(now.crlNumber);
    expect(served.entries.get(certs.before.serial)!.reason).toBe('keyCompromise'); // in the backup: its reason was never lost
    expect(served.entries.get(certs['lost-1'].serial)!.reason).toBe('unspecified');
    expect(served.entries.get(certs.unknown.serial)!.reason).toBe('unspecified');

    // The API: re-marked REVOKED with the CRL's date, reason unspecified.
    for (const [name, reason] of [['lost-1', 'unspecified'], ['lost-2', 'unspecified']] as const) {
      const got = await t.call(TENANT, 'GET', `/customer/certificates/${certs[name].id}`);
      expect(got.status, got.body).toBe(200);
      const c = got.json.certificate ?? got.json;
      expect(c.status, name).toBe('REVOKED');
      expect(c.revoked_reason).toBe(reason);
    }
    // Audited: the tenant's two certificates, the unknown serial under the system tenant.
    const audit = await t.call(null, 'GET', '/api/v1/operator/audit-events?action=certificate.revocation_restored');
    expect(audit.status, audit.body).toBe(200);
    const events = audit.json.audit_events as Array<{ tenant_id: string; target_id: string; details: Record<string, unknown> }>;
    expect(events.filter((e) => e.tenant_id === TENANT).map((e) => Number(e.target_id)).sort()).toEqual([certs['lost-1'].id, certs['lost-2'].id].sort());
    expect(events.filter((e) => e.tenant_id === '__system__').map((e) => e.target_id)).toEqual([certs.unknown.serial]);
    expect(events[0].details).toMatchObject({ crl_source: 'broker_file', crl_number: last.crlNumber.toString() });
    // One operator alert says how many.
    const alerts = await t.call(null, 'GET', '/api/v1/operator/alerts?tenant_id=__system__&type=CRL_RECONCILED&status=OPEN');
    expect(alerts.status, alerts.body).toBe(200);
    expect(alerts.json.alerts).toHaveLength(1);
    expect(alerts.json.alerts[0].summary).toMatch(/^3 revocations restored/);
    expect(alerts.json.alerts[0].details).toMatchObject({ remarked: 2, kept: 1 });

    // The broker: still refused, every one of them; the valid certificate still connects.
    for (const name of ['before', 'lost-1', 'lost-2', 'unknown']) await expectBroker(certs[name], 'revoked');
    await expectBroker(certs.valid, 'accepted');

    // The certificate the restored database never knew cannot be imported as valid: it is revoked.
    expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: 'DEV-unknown' })).status).toBe(201);
    const imported = await t.call(TENANT, 'POST', '/customer/devices/DEV-unknown/certificates/import', { cert_pem: readFileSync(certs.unknown.cert, 'utf8') });
    expect(imported.status, imported.body).toBe(409);
    expect(imported.json.code).toBe('CERTIFICATE_ALREADY_REVOKED');

    // A later publication still lists the unknown serial; numbers keep increasing.
    await revoke(t, certs.valid, 'superseded');
    const later = fileCrl(env.CRL_OUTPUT_PATH, env.DEVICE_CA_CERT_PATH);
    expect(later.number).toBeGreaterThan(now.crlNumber);
    for (const name of ['before', 'lost-1', 'lost-2', 'unknown', 'valid']) expect(later.entries.has(certs[name].serial), name).toBe(true);
    await expectBroker(certs.valid, 'revoked');

    // Idempotent: a second start restores nothing more, raises no second alert.
    await t.close();
    t = await startTestService({ ...database, db: restored.storage.db, driver, storage: restored.storage, url: fresh.url } as TestDatabase, { dataDir: join(tmp, 'data'), env, clock });
    await t.service.crl.publisher!.idle();
    const again = await t.call(null, 'GET', '/api/v1/operator/audit-events?action=certificate.revocation_restored');
    expect(again.json.audit_events).toHaveLength(3);
    expect((await t.call(null, 'GET', '/api/v1/operator/alerts?tenant_id=__system__&type=CRL_RECONCILED')).json.alerts).toHaveLength(1);
  }, scaled(240_000));
});

async function t_certificateStatus(database: { db: TestDatabase['db'] }, id: number): Promise<string> {
  return database.db.asOperator(async (tx) => String((await tx.query<{ status: string }>('SELECT status FROM device_certificates WHERE id = $1', [id])).rows[0]?.status));
}

/**
 * The file's one PGlite database (opening one costs 2.5 to 3.5 s of CPU), emptied for each use:
 * the PGlite tests below start every service on an empty database, as on a new one.
 */
let pglite: TestDatabase | null = null;
async function emptyPglite(): Promise<TestDatabase> {
  if (pglite) await pglite.reset();
  else pglite = await createTestDatabase('pglite');
  return pglite;
}
afterAll(async () => pglite?.close());

describe('PGlite: a restore simulated, the broker file gone, the last CRL handed over in CRL_RECONCILE_PATH', () => {
  let database: TestDatabase;
  let dataDir: string;
  let t: TestService | null = null;
  afterAll(async () => {
    await t?.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('re-marks the revocations the database lost, numbers above the handed-over CRL; a second start changes nothing', async () => {
    database = await emptyPglite();
    dataDir = mkdtempSync(join(tmpdir(), 'certfleet-dr-pglite-'));
    t = await startTestService(database, { dataDir });
    const issuerKeyId = t.service.crl.issuerKeyId!;
    const certs: Record<string, DeviceCert> = {};
    for (const name of ['a', 'b', 'c']) certs[name] = await issue(t, dataDir, `DEV-${name}`);
    await revoke(t, certs.a, 'keyCompromise');
    await revoke(t, certs.b, 'affiliationChanged');
    const caCert = t.config.caCertPath;
    const crlFile = t.config.crlOutputPath;
    const last = await servedCrl(t, caCert); // the CRL served at /pki/crl: with each entry's reason
    await t.close();
    t = null;

    // The operator kept the last CRL served at /pki/crl (DER); the broker's file is gone (a new host); the database lost both revocations and its CRL.
    const handedOver = join(dataDir, 'last.crl');
    writeFileSync(handedOver, last.der);
    rmSync(crlFile);
    await database.db.asOperator(async (tx) => {
      await tx.query(`UPDATE device_certificates SET status = 'ACTIVE', revoked_at = NULL, revoked_reason = NULL WHERE id = ANY($1::bigint[])`, [[certs.a.id, certs.b.id]]);
      await tx.query(`UPDATE crl_state SET crl_number = 1, der = NULL, sha256 = NULL, file_signature = NULL, this_update = NULL, next_update = NULL, entries = NULL`);
    });

    t = await startTestService(database, { dataDir, env: { CRL_RECONCILE_PATH: handedOver } });
    await t.service.crl.publisher!.idle();
    const next = await servedCrl(t, caCert);
    expect(next.number).toBeGreaterThan(last.number);
    expect(fileCrl(crlFile, caCert).number).toBe(next.number);
    expect(next.entries.get(certs.a.serial)?.reason).toBe('keyCompromise');
    expect(next.entries.get(certs.b.serial)?.reason).toBe('affiliationChanged');
    expect(next.entries.has(certs.c.serial)).toBe(false);
    expect((await storedCrl(database, issuerKeyId)).crlNumber).toBe(next.number);
    for (const name of ['a', 'b']) {
      const got = await t.call(TENANT, 'GET', `/customer/certificates/${certs[name].id}`);
      expect((got.json.certificate ?? got.json).status, name).toBe('REVOKED');
    }
    const audit = (await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.revocation_restored')).json.audit_events;
    expect(audit.map((e: { target_id: string }) => Number(e.target_id)).sort()).toEqual([certs.a.id, certs.b.id].sort());
    expect(audit[0].details).toMatchObject({ crl_source: 'operator_file', crl_path: handedOver });
    await t.close();

    // Idempotent: the same file again restores nothing, publishes nothing new.
    t = await startTestService(database, { dataDir, env: { CRL_RECONCILE_PATH: handedOver } });
    await t.service.crl.publisher!.idle();
    expect((await t.call(TENANT, 'GET', '/customer/audit-events?action=certificate.revocation_restored')).json.audit_events).toHaveLength(2);
    expect((await t.call(null, 'GET', '/api/v1/operator/alerts?tenant_id=__system__&type=CRL_RECONCILED')).json.alerts).toHaveLength(1);
    expect(fileCrl(crlFile, caCert).number).toBe(next.number);
  }, scaled(120_000));
});

describe('CRL_RECONCILE_PATH that is not a CRL of this CA: the start fails, nothing is published', () => {
  let dataDir: string;
  let otherDir: string;
  afterAll(() => {
    for (const d of [dataDir, otherDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('garbage, another CA’s CRL, a truncated CRL, a missing file: each named with its reason; serve exits 1', async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'certfleet-dr-bad-'));
    otherDir = mkdtempSync(join(tmpdir(), 'certfleet-dr-other-'));
    // Our CA's CRL file, and another CA's (another data dir: another development CA).
    for (const dir of [dataDir, otherDir]) {
      const db = await emptyPglite();
      const s = await startTestService(db, { dataDir: dir });
      await s.service.crl.publisher!.idle();
      await s.close();
    }
    const ours = join(dataDir, 'pki', 'device-crl.pem');
    const oursBefore = readFileSync(ours, 'latin1');
    const der = crlPemToDer(oursBefore);
    const bad = join(dataDir, 'bad');
    mkdirSync(bad);
    const files = {
      garbage: join(bad, 'garbage.pem'),
      other: join(otherDir, 'pki', 'device-crl.pem'),
      truncated: join(bad, 'truncated.pem'),
      missing: join(bad, 'missing.pem'),
    };
    writeFileSync(files.garbage, 'this is not a CRL\n');
    writeFileSync(files.truncated, crlDerToPem(der.subarray(0, der.length - 20)));
    const reasons: Record<keyof typeof files, RegExp> = {
      garbage: /not a valid CRL of this CA/,
      other: /not a valid CRL of this CA \(CRL verification failed: (signature|issuer|CRL is signed)/,
      truncated: /not a valid CRL of this CA \(CRL verification failed:/,
      missing: /cannot read it/,
    };
    // One empty database for the four starts: none of them may store anything in it.
    const empty = await emptyPglite();
    for (const [name, path] of Object.entries(files) as Array<[keyof typeof files, string]>) {
      const db = empty;
      const error = await startTestService(db, { dataDir, env: { CRL_RECONCILE_PATH: path } }).then(
        (s) => (void s.close(), null),
        (e: Error) => e,
      );
      expect(error, name).toBeInstanceOf(Error);
      expect(error!.message, name).toContain(`CRL_RECONCILE_PATH ${path} refused`);
      expect(error!.message, name).toMatch(reasons[name]);
      expect((error as { code?: string }).code).toBe('CRL_RECONCILE_REFUSED');
      // Nothing published: no stored CRL, the broker's file untouched.
      expect(await db.db.asOperator((tx) => tx.query('SELECT count(*)::int AS n FROM crl_state WHERE der IS NOT NULL')).then((r) => r.rows[0].n), name).toBe(0);
      expect(readFileSync(ours, 'latin1'), name).toBe(oursBefore);
    }

    // The broker's file that is not a CRL of this CA (damaged, a replaced CA): refused with an error, not used; the start goes on.
    writeFileSync(ours, crlDerToPem(der.subarray(0, der.length - 20)));
    const lines: string[] = [];
    const db = await emptyPglite();
    const s = await startTestService(db, { dataDir, overrides: { logger: createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } }) } });
    await s.service.crl.publisher!.idle();
    await s.close();
    expect(lines.map((l) => JSON.parse(l))).toContainEqual(expect.objectContaining({ level: 'error', event: 'crl_reconcile_refused', source: 'broker_file', path: ours }));

    // `certfleet serve`: exit code 1, the reason on stderr, never listening.
    const res = spawnSync(process.execPath, [BIN, 'serve'], {
      encoding: 'utf8',
      env: { ...process.env, CERTFLEET_DATA_DIR: mkdtempSync(join(tmpdir(), 'certfleet-dr-serve-')), PORT: '0', CRL_RECONCILE_PATH: files.garbage },
      timeout: scaled(90_000),
    });
    expect(res.status, res.stderr).toBe(1);
    expect(res.stderr).toContain(`CRL_RECONCILE_PATH ${files.garbage} refused: not a valid CRL of this CA`);
    expect(res.stdout).not.toMatch(/"event":"started"/);
  }, scaled(180_000));
});
