/**
 * Claim (factory) onboarding on two API replicas sharing one Postgres database: "one claim
 * certificate, one device" must hold across processes, not only within one (the in-process lock
 * serialises one process's requests only). Each replica is a full service with its own connection
 * pool and its own EST listener; the device is curl with its claim certificate.
 *
 * The requests meet deterministically: the tenant's approval webhook (asked after every check and
 * before the claim is bound) holds every request until all of them have arrived, then approves
 * them at once, so the replicas bind and issue at the same moment.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, sign as signData } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { provisioningSigningText } from '../src/renewal/claim-onboarding.ts';
import { createDatabase } from '../src/storage/database.ts';
import { createPgDriver } from '../src/storage/pg-driver.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';

const exec = promisify(execFile);

interface Curl {
  status: number;
  body: string;
}

/** An approval endpoint that answers nobody until `expected` requests are waiting, then approves them all. */
async function startBarrierApprover() {
  let expected = Number.POSITIVE_INFINITY;
  const waiting: ServerResponse[] = [];
  const received: unknown[] = [];
  const arrivals: (() => void)[] = [];
  const release = () => {
    if (waiting.length < expected) return;
    for (const response of waiting.splice(0)) response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ approved: true }));
  };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      waiting.push(response);
      for (const arrived of arrivals.splice(0)) arrived();
      release();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/approve`,
    received,
    /** The next `n` requests are held until all `n` have arrived. */
    expect(n: number) {
      expected = n;
      received.length = 0;
    },
    /** Resolves once `n` requests have arrived (a readiness signal, no sleep). */
    async arrived(n: number) {
      while (received.length < n) await new Promise<void>((resolve) => arrivals.push(resolve));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('claim onboarding on two replicas of one Postgres database', () => {
  let database: TestDatabase;
  let r1: TestService;
  let r2: TestService;
  let dir: string;
  let combinedCa: string;
  const est: Record<string, string> = {};
  let approver: Awaited<ReturnType<typeof startBarrierApprover>>;
  let receiver: WebhookReceiver;
  const admin = 'tenant-admin' as const;
  const file = (name: string) => path.join(dir, name);

  async function openssl(args: string[]): Promise<string> {
    const { stdout } = await exec('openssl', args, { cwd: dir });
    return stdout;
  }

  /** curl as a device at the replica's EST listener, with its claim certificate as TLS client certificate. */
  async function enroll(replica: 'r1' | 'r2', claim: string, csrFile: string): Promise<Curl> {
    const args = ['-sS', '--cacert', combinedCa, '-o', '-', '-w', '\n%{http_code}', '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${file(csrFile)}`];
    args.push('--cert', file(`${claim}.crt`), '--key', file(`${claim}.key`));
    const { stdout } = await exec('curl', [...args, `${est[replica]}/acme/simpleenroll`]);
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }

  /** A new EC key `${name}.key` and its CSR `${name}.csr` (base64 DER, as RFC 7030 sends it). */
  async function csr(name: string): Promise<string> {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=whatever', '-outform', 'DER', '-out', `${name}.csr.der`]);
    await openssl(['base64', '-in', `${name}.csr.der`, '-out', `${name}.csr`]);
    return `${name}.csr`;
  }

  async function makeClaim(name: string, cn: string, san: string) {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', `/CN=${cn}/O=Manufacturer`, '-out', `${name}.req`]);
    await writeFile(file(`${name}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=${san}\n`);
    await openssl([
      'x509', '-req', '-in', `${name}.req`, '-CA', 'mfr.crt', '-CAkey', 'mfr.key', '-days', '365', '-sha256',
      '-set_serial', `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`, '-extfile', `${name}.ext`, '-out', `${name}.crt`,
    ]);
    // openssl dates the claim from the real clock: the replicas' manual clocks must not lag behind it.
    for (const r of [r1, r2]) if (r.clock.now().getTime() < Date.now()) r.clock.set(new Date());
  }

  const query = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []) => (await database.db.asOperator((tx) => tx.query<T>(sql, params))).rows;
  const certificatesOf = async (device: string) =>
    (await query<{ n: number }>(`SELECT count(*)::int AS n FROM device_certificates WHERE tenant_id = 'acme' AND device_id = $1`, [device]))[0].n;
  const deviceExists = async (device: string) => (await query(`SELECT 1 FROM device_registry WHERE tenant_id = 'acme' AND device_id = $1`, [device])).length === 1;
  const policy = async (body: Record<string, unknown>) => {
    const res = await r1.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { ...body, approval_webhook: { url: approver.url, timeout_ms: 25_000 } }, admin);
    expect(res.status, res.body).toBe(200);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'certfleet-claim-replicas-'));
    database = await createTestDatabase('pg');
    const brokerDir = path.join(dir, 'broker');
    const env = {
      EST_PORT: '0',
      EST_HOST: '127.0.0.1',
      EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'),
      EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key'),
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    };
    r1 = await startTestService(database, { env });
    // The second replica: its own process state and connection pool, the same database, Device CA and
    // secret keys (the data dir holds the key files, as a shared volume or secret would in production).
    const driver = createPgDriver(database.url!);
    r2 = await startTestService(database, { env, dataDir: r1.dataDir, overrides: { storage: { db: createDatabase(driver), driver, close: () => driver.close() } } });
    const broker = await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: r1.service.ca.ca!.certPem, crlPath: r1.config.crlOutputPath });
    combinedCa = broker.files.combinedCa;
    approver = await startBarrierApprover();
    receiver = await startWebhookReceiver();

    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.crt', '-days', '3650',
      '-subj', '/CN=Acme Manufacturing Claim CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    const created = await r1.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: await readFile(file('mfr.crt'), 'utf8') }, admin);
    expect(created.status, created.body).toBe(201);
    // A notification webhook, so that an opened alert leaves its alert.opened event in the outbox.
    expect((await r1.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/hook') })).status).toBe(201);
    // Both EST listeners start after the claim CA exists: both name it in their TLS certificate request.
    for (const [name, r] of [['r1', r1], ['r2', r2]] as const) {
      const { est: url } = await r.service.renewal.start(r.service.app.log);
      est[name] = url!.replace('127.0.0.1', 'localhost');
    }
  });

  afterAll(async () => {
    await approver?.close();
    await receiver?.close();
    await r2?.close();
    await r1?.close();
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    await policy({});
  });

  it('the same claim on both replicas at once, for the same device id with two keys: one device, one certificate; the other 409 CLAIM_ALREADY_ENROLLED', async () => {
    await makeClaim('claim-a', 'SN-A', 'URI:urn:acme:device:unit-a');
    const [csr1, csr2] = [await csr('a-1'), await csr('a-2')];
    approver.expect(2);
    const answers = await Promise.all([enroll('r1', 'claim-a', csr1), enroll('r2', 'claim-a', csr2)]);
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses, answers.map((a) => a.body).join('\n')).toEqual([200, 409]);
    expect(JSON.parse(answers.find((a) => a.status === 409)!.body).code).toBe('CLAIM_ALREADY_ENROLLED');
    expect(await certificatesOf('SN-A')).toBe(1);
    expect(await query(`SELECT 1 FROM claim_enrollments WHERE tenant_id = 'acme' AND device_id = 'SN-A'`)).toHaveLength(1);
    const enrolled = await query(`SELECT 1 FROM audit_events WHERE tenant_id = 'acme' AND action = 'claim.enrolled' AND target_id = 'SN-A'`);
    expect(enrolled).toHaveLength(1);
  });

  it('the same claim and the same CSR on both replicas at once (a lost answer retried elsewhere): the same certificate to both, issued once', async () => {
    await makeClaim('claim-b', 'SN-B', 'URI:urn:acme:device:unit-b');
    const request = await csr('b-1');
    approver.expect(2);
    const answers = await Promise.all([enroll('r1', 'claim-b', request), enroll('r2', 'claim-b', request)]);
    expect(answers.map((a) => a.status), answers.map((a) => a.body).join('\n')).toEqual([200, 200]);
    expect(answers[0].body).toBe(answers[1].body);
    expect(await certificatesOf('SN-B')).toBe(1);
  });

  it('the same claim on both replicas at once for two device ids: one device registered, the other 409 CLAIM_CERT_SHARED, the alert raised once', async () => {
    await makeClaim('claim-c', 'SN-C', 'URI:urn:acme:device:unit-c');
    const [csr1, csr2] = [await csr('c-1'), await csr('c-2')];
    approver.expect(2);
    // r1 derives SN-C (the CN); then the policy derives the id from the SAN, and r2 derives unit-c.
    const first = enroll('r1', 'claim-c', csr1);
    await approver.arrived(1);
    await policy({ device_id: { from: 'san_uri', pattern: '^urn:acme:device:(.+)$' } });
    const answers = await Promise.all([first, enroll('r2', 'claim-c', csr2)]);
    expect(approver.received.map((r) => (r as { device_id: string }).device_id).sort()).toEqual(['SN-C', 'unit-c']);
    expect(answers.map((a) => a.status).sort(), answers.map((a) => a.body).join('\n')).toEqual([200, 409]);
    const refused = JSON.parse(answers.find((a) => a.status === 409)!.body);
    expect(refused.code).toBe('CLAIM_CERT_SHARED');
    const registered = [await deviceExists('SN-C'), await deviceExists('unit-c')];
    expect(registered.filter(Boolean)).toHaveLength(1);
    expect((await certificatesOf('SN-C')) + (await certificatesOf('unit-c'))).toBe(1);
    const bound = registered[0] ? 'SN-C' : 'unit-c';
    expect(refused.detail).toContain(bound);

    // A third try for the id that lost (the cloned claim again, on the other replica): refused again;
    // still one alert, one alert.opened event.
    if (bound === 'unit-c') await policy({});
    const again = await enroll(answers[0].status === 409 ? 'r2' : 'r1', 'claim-c', await csr('c-3'));
    expect(again.status, again.body).toBe(409);
    expect(JSON.parse(again.body).code).toBe('CLAIM_CERT_SHARED');
    const alerts = await query<{ device_id: string }>(`SELECT device_id FROM fleet_alert WHERE tenant_id = 'acme' AND alert_type = 'CLAIM_CERT_SHARED'`);
    expect(alerts).toEqual([{ device_id: bound }]);
    expect(await query(`SELECT 1 FROM notification_outbox WHERE tenant_id = 'acme' AND event = 'alert.opened' AND payload::text LIKE '%CLAIM_CERT_SHARED%'`)).toHaveLength(1);
    const refusals = await query<{ details: { code: string } }>(`SELECT details FROM audit_events WHERE tenant_id = 'acme' AND action = 'claim.enrollment_refused'`);
    expect(refusals.filter((r) => r.details.code === 'CLAIM_CERT_SHARED')).toHaveLength(2);
  });

  it('two claims deriving one device id, on both replicas at once (EST and MQTT): one onboards it, the other is refused 409 DEVICE_EXISTS', async () => {
    await makeClaim('claim-d1', 'SN-D1', 'URI:urn:acme:device:unit-d');
    await makeClaim('claim-d2', 'SN-D2', 'URI:urn:acme:device:unit-d');
    await policy({ device_id: { from: 'san_uri', pattern: '^urn:acme:device:(.+)$' } });
    const request = await csr('d-1');
    await csr('d-2');
    const csrPem = await openssl(['req', '-in', 'd-2.csr.der', '-inform', 'DER']);
    const claimDer = Buffer.from((await readFile(file('claim-d2.crt'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const signedAt = Math.floor(r2.clock.now().getTime() / 1000);
    const signature = signData('sha256', Buffer.from(provisioningSigningText('d-req', signedAt, csrPem)), createPrivateKey(await readFile(file('claim-d2.key')))).toString('base64');
    approver.expect(2);
    const [overEst, overMqtt] = await Promise.allSettled([
      enroll('r1', 'claim-d1', request),
      r2.service.renewal.claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', { requestId: 'd-req', signedAt, signature }),
    ]);
    expect(overEst.status).toBe('fulfilled');
    const est = (overEst as PromiseFulfilledResult<Curl>).value;
    if (est.status === 200) {
      expect(overMqtt.status).toBe('rejected');
      expect((overMqtt as PromiseRejectedResult).reason).toMatchObject({ code: 'DEVICE_EXISTS' });
    } else {
      expect(est.status, est.body).toBe(409);
      expect(JSON.parse(est.body).code).toBe('DEVICE_EXISTS');
      expect(overMqtt.status).toBe('fulfilled');
    }
    expect(await certificatesOf('unit-d')).toBe(1);
    expect(await query(`SELECT 1 FROM claim_enrollments WHERE tenant_id = 'acme' AND device_id = 'unit-d'`)).toHaveLength(1);
  });
});
