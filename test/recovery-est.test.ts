/**
 * Recovery after an offline period over EST (issue 21, item 3): a device whose certificate
 * really expired (notAfter in the past for the listener's TLS, which checks on the real clock)
 * comes back and renews with it, as curl and openssl, when its tenant's renewal policy allows
 * (recovery_window_days, off by default). Refused, each with its code and an audit event: recovery
 * off, after the window, a revoked certificate, a certificate superseded by a newer one, and a
 * certificate certfleet did not issue (imported). The renewal policy API (tenant-admin, audited,
 * 422 on bad values) is exercised on the way.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { createManualClock, DAY_MS } from '../src/domain/clock.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const exec = promisify(execFile);

describe.each(oneDriver('pglite'))('EST recovery with an expired certificate on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  let estUrl: string;
  let combinedCa: string;
  let deviceCaFile: string;
  /** The service starts 40 days in the past: certificates issued then are really expired now. */
  const realNow = Date.now();
  const clock = createManualClock(new Date(realNow - 40 * DAY_MS));
  const file = (name: string) => path.join(dir, name);

  async function openssl(args: string[]): Promise<string> {
    const { stdout } = await exec('openssl', args, { cwd: dir });
    return stdout;
  }

  async function curl(pathPart: string, options: { cert?: string; csr?: string } = {}): Promise<{ status: number; body: string; headers: string }> {
    const args = ['-sS', '--cacert', combinedCa, '-D', file('headers.txt'), '-o', '-', '-w', '\n%{http_code}'];
    if (options.cert) args.push('--cert', file(`${options.cert}.crt`), '--key', file(`${options.cert}.key`));
    if (options.csr !== undefined) args.push('-H', 'Content-Type: application/pkcs10', '--data-binary', `@${file(options.csr)}`);
    const { stdout } = await exec('curl', [...args, `${estUrl}/${pathPart}`]);
    const cut = stdout.lastIndexOf('\n');
    const { readFile } = await import('node:fs/promises');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut), headers: await readFile(file('headers.txt'), 'utf8') };
  }

  async function csr(name: string): Promise<string> {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=device', '-outform', 'DER', '-out', `${name}.csr.der`]);
    await openssl(['base64', '-in', `${name}.csr.der`, '-out', `${name}.csr`]);
    return `${name}.csr`;
  }

  async function saveCert(body: string, name: string): Promise<string> {
    await writeFile(file(`${name}.p7.b64`), body);
    await openssl(['base64', '-d', '-in', `${name}.p7.b64`, '-out', `${name}.p7`]);
    const pem = await openssl(['pkcs7', '-inform', 'DER', '-in', `${name}.p7`, '-print_certs']);
    const cert = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
    await writeFile(file(`${name}.crt`), cert);
    return cert;
  }

  /** A 1-day certificate issued at the (past) clock, saved as name.crt/name.key. */
  async function issue(deviceId: string, name: string, validityDays = 1): Promise<{ id: number; pem: string }> {
    const res = await t.call('acme', 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: validityDays });
    expect(res.status, res.body).toBe(201);
    await writeFile(file(`${name}.crt`), res.json.cert_pem);
    await writeFile(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
    return { id: res.json.certificate.id, pem: res.json.cert_pem };
  }

  const audit = async (action: string) => (await t.call('acme', 'GET', `/customer/audit-events?action=${action}`)).json.audit_events as Array<{ actor: string; target_id: string; details: Record<string, unknown> }>;
  const setPolicy = (body: unknown, role: 'tenant-admin' | 'customer' = 'tenant-admin') => t.call('acme', 'PUT', '/customer/renewal-policy', body, role);
  const certs: Record<string, { id: number; pem: string }> = {};

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'certfleet-recovery-est-'));
    database = await createTestDatabase(kind);
    const brokerDir = path.join(dir, 'broker');
    t = await startTestService(database, {
      clock,
      env: { EST_PORT: '0', EST_HOST: '127.0.0.1', EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'), EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key') },
    });
    const broker = await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: t.service.ca.ca!.certPem, crlPath: t.config.crlOutputPath });
    combinedCa = broker.files.combinedCa;
    deviceCaFile = broker.files.deviceCaCert;
    const { est } = await t.service.renewal.start(t.service.app.log);
    estUrl = est!.replace('127.0.0.1', 'localhost');
    for (const id of ['scooter', 'superseded', 'revoked', 'late', 'imported']) {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
    }
    // 40 days ago: the fleet gets 1-day certificates; 'late' gets its certificate 39 days ago... all expire 39 days ago.
    certs.scooter = await issue('scooter', 'scooter');
    certs.superseded = await issue('superseded', 'superseded-old');
    certs.revoked = await issue('revoked', 'revoked');
    certs.late = await issue('late', 'late');
    clock.advance(1 * DAY_MS / 2);
    certs.supersededNew = await issue('superseded', 'superseded-new', 30);
    expect((await t.call('acme', 'POST', `/customer/certificates/${certs.revoked.id}/revoke`, { reason: 'cessationOfOperation' })).status).toBe(200);
    clock.set(new Date(realNow));
  });

  afterAll(async () => {
    await t?.close();
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the renewal policy: defaults, tenant-admin only, 422 on bad values, audited', async () => {
    const initial = await t.call('acme', 'GET', '/customer/renewal-policy');
    expect(initial.status).toBe(200);
    expect(initial.json).toEqual({ tenant_id: 'acme', validity_days: 365, renewal_window: 1 / 3, jitter: 0.25, recovery_window_days: 0, revoke_superseded: true, max_recovery_window_days: 365 });
    expect((await setPolicy({ recovery_window_days: 30 }, 'customer')).status).toBe(403);
    for (const bad of [{ recovery_window_days: 366 }, { recovery_window_days: -1 }, { renewal_window: 0 }, { renewal_window: 0.95 }, { jitter: 1.5 }, { validity_days: 0 }, { validity_days: 1.5 }, {}, { surprise: 1 }]) {
      const res = await setPolicy(bad);
      expect(res.status, JSON.stringify(bad)).toBe(422);
      expect(res.json.code).toBe('VALIDATION_FAILED');
    }
    expect((await t.call('acme', 'GET', '/customer/renewal-policy')).json.recovery_window_days).toBe(0);
    expect(await audit('renewal_policy.updated')).toHaveLength(0);
    // Another tenant's policy is its own.
    expect((await t.call('other', 'PUT', '/customer/renewal-policy', { recovery_window_days: 200 }, 'tenant-admin')).status).toBe(200);
    expect((await t.call('acme', 'GET', '/customer/renewal-policy')).json.recovery_window_days).toBe(0);
  });

  it('really expired: TLS alone would refuse it; with recovery off (the default) it is refused, RECOVERY_DISABLED, audited', async () => {
    // openssl agrees the certificate has expired (on the real clock).
    await expect(openssl(['verify', '-CAfile', deviceCaFile, 'scooter.crt'])).rejects.toThrow(/certificate has expired/);
    const res = await curl('simplereenroll', { cert: 'scooter', csr: await csr('scooter-next') });
    expect(res.status, res.body).toBe(403);
    expect(res.headers).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(res.body).code).toBe('RECOVERY_DISABLED');
    const [event] = await audit('certificate.recovery_refused');
    expect(event).toMatchObject({ actor: 'device:acme/scooter', target_id: String(certs.scooter.id), details: { code: 'RECOVERY_DISABLED', transport: 'est', certificate_id: certs.scooter.id } });
  });

  it('within the window: the expired device renews over EST without an operator, retries get the same certificate, audited with the expired identity', async () => {
    const policy = await setPolicy({ recovery_window_days: 60 });
    expect(policy.status).toBe(200);
    expect(policy.json.recovery_window_days).toBe(60);
    expect((await audit('renewal_policy.updated'))[0]).toMatchObject({ actor: 'test:acme:tenant-admin', details: { before: { recovery_window_days: 0 }, after: { recovery_window_days: 60 } } });

    const request = await csr('scooter-new');
    const res = await curl('simplereenroll', { cert: 'scooter', csr: request });
    expect(res.status, res.body).toBe(200);
    // Clock-less devices: the answer carries the server's time.
    const date = res.headers.match(/^date: (.+)$/im)?.[1];
    expect(date && Math.abs(Date.parse(date) - Date.now())).toBeLessThan(60_000);
    const pem = await saveCert(res.body, 'scooter-new');
    // Server advice: when to renew the certificate just issued (the tenant's window, jittered), RFC 3339.
    const due = res.headers.match(/^certfleet-renewal-due: (.+)$/im)?.[1]?.trim();
    const newEnd = Date.parse((await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-enddate'])).replace('notAfter=', '').trim());
    const newStart = Date.parse((await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-startdate'])).replace('notBefore=', '').trim());
    expect(due).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    expect(Date.parse(due!)).toBeGreaterThanOrEqual(newEnd - ((newEnd - newStart) / 3) - 1000);
    expect(Date.parse(due!)).toBeLessThan(newEnd);
    // Using a certificate over EST gets the same advice for it.
    const used = await curl('cacerts', { cert: 'scooter' });
    expect(used.headers).not.toMatch(/certfleet-renewal-due/i); // an expired certificate authenticates nothing here
    expect(await openssl(['verify', '-CAfile', deviceCaFile, 'scooter-new.crt'])).toContain('OK');
    expect(await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'scooter-new.key', '-pubout']));
    expect(await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*acme\/scooter/);

    const again = await curl('simplereenroll', { cert: 'scooter', csr: request });
    expect(again.status, again.body).toBe(200);
    expect(await saveCert(again.body, 'scooter-again')).toBe(pem);
    // Another key with the expired certificate while one answer exists: refused.
    const other = await curl('simplereenroll', { cert: 'scooter', csr: await csr('scooter-other') });
    expect([403, 409]).toContain(other.status);

    const recovered = (await audit('certificate.recovered')).filter((e) => e.target_id === String(certs.scooter.id));
    expect(recovered.length).toBeGreaterThanOrEqual(2);
    const fingerprint = (await t.call('acme', 'GET', `/customer/certificates/${certs.scooter.id}`)).json.certificate.fingerprint_sha256;
    expect(recovered.at(-1)).toMatchObject({ actor: 'device:acme/scooter', details: { fingerprint_sha256: fingerprint, transport: 'est', replayed: false } });
    expect(Number(recovered.at(-1)!.details.expired_for_seconds)).toBeGreaterThan(38 * 86_400);

    // The device uses its new certificate; the expired one cannot renew again.
    const using = await curl('cacerts', { cert: 'scooter-new' });
    expect(using.status).toBe(200);
    expect(using.headers.match(/^certfleet-renewal-due: (.+)$/im)?.[1]?.trim()).toBe(due);
    const late = await curl('simplereenroll', { cert: 'scooter', csr: await csr('scooter-late') });
    expect(late.status).toBe(403);
  });

  it('refuses a superseded, a revoked, an imported certificate and one past the window, each with its code and an audit event', async () => {
    const superseded = await curl('simplereenroll', { cert: 'superseded-old', csr: await csr('s-next') });
    expect(superseded.status).toBe(403);
    expect(JSON.parse(superseded.body).code).toBe('CERTIFICATE_SUPERSEDED');

    const revoked = await curl('simplereenroll', { cert: 'revoked', csr: await csr('r-next') });
    expect(revoked.status).toBe(403);
    expect(JSON.parse(revoked.body).detail).toMatch(/revoked/);

    expect((await setPolicy({ recovery_window_days: 30 })).status).toBe(200);
    const late = await curl('simplereenroll', { cert: 'late', csr: await csr('l-next') });
    expect(late.status).toBe(403);
    expect(JSON.parse(late.body).code).toBe('RECOVERY_WINDOW_PASSED');

    const refusals = await audit('certificate.recovery_refused');
    const codes = Object.fromEntries(refusals.map((e) => [e.target_id, e.details.code]));
    expect(codes[String(certs.superseded.id)]).toBe('CERTIFICATE_SUPERSEDED');
    expect(codes[String(certs.revoked.id)]).toBe('FORBIDDEN');
    expect(codes[String(certs.late.id)]).toBe('RECOVERY_WINDOW_PASSED');
    // Nothing was issued for them.
    for (const device of ['revoked', 'late']) {
      const list = await t.call('acme', 'GET', `/customer/certificates?device_id=${device}`);
      expect(list.json.certificates ?? list.json.items).toHaveLength(1);
    }
  });

  it('refuses a certificate certfleet did not issue (signed by the Device CA outside certfleet, then imported): RECOVERY_NOT_ALLOWED', async () => {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'imported.key', '-subj', '/CN=acme\\/imported', '-out', 'imported.csr']);
    await writeFile(file('client.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    await openssl(['x509', '-req', '-in', 'imported.csr', '-CA', t.config.caCertPath, '-CAkey', t.config.caKeyPath, '-CAcreateserial', '-days', '1', '-extfile', 'client.ext', '-out', 'imported.crt']);
    const { readFile } = await import('node:fs/promises');
    const imported = await t.call('acme', 'POST', '/customer/devices/imported/certificates/import', { cert_pem: await readFile(file('imported.crt'), 'utf8') });
    expect(imported.status, imported.body).toBe(201);
    // Two days later (certfleet's clock) the imported certificate has expired.
    clock.set(new Date(Date.now() + 2 * DAY_MS));
    try {
      const res = await curl('simplereenroll', { cert: 'imported', csr: await csr('i-next') });
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body).code).toBe('RECOVERY_NOT_ALLOWED');
    } finally {
      clock.set(new Date());
    }
  });

  it('clock-less devices: the time over a TLS connection verified except for dates (the documented recipe), and a backdated notBefore', async () => {
    const url = new URL(estUrl);
    const request = `HEAD /.well-known/est/cacerts HTTP/1.1\r\nHost: ${url.hostname}\r\nConnection: close\r\n\r\n`;
    const { stdout } = await exec('sh', [
      '-c',
      `printf '${request.replace(/\r/g, '\\r').replace(/\n/g, '\\n')}' | openssl s_client -quiet -connect 127.0.0.1:${url.port} -servername ${url.hostname} ` +
        `-CAfile ${combinedCa} -verify_return_error -verify_hostname ${url.hostname} -no_check_time 2>/dev/null | sed -n 's/^[Dd]ate: //p' | tr -d '\\r'`,
    ]);
    expect(Math.abs(Date.parse(stdout.trim()) - Date.now())).toBeLessThan(60_000);
    // A server certificate from another CA fails the same check: the time comes only from the real server.
    await expect(exec('sh', ['-c', `printf 'HEAD / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -quiet -connect 127.0.0.1:${url.port} -servername ${url.hostname} -CAfile ${deviceCaFile} -verify_return_error -no_check_time`])).rejects.toThrow();
    // notBefore is backdated by 5 minutes.
    const notBefore = Date.parse((await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-startdate'])).replace('notBefore=', '').trim());
    const serial = (await openssl(['x509', '-in', 'scooter-new.crt', '-noout', '-serial'])).replace('serial=', '').trim().replace(/^0+/, '').toLowerCase();
    const listed = (await t.call('acme', 'GET', '/customer/certificates?device_id=scooter')).json.certificates as Array<{ serial_number: string; created_at: string }>;
    const issuedAt = Date.parse(listed.find((c) => c.serial_number.replace(/^0+/, '').toLowerCase() === serial)!.created_at);
    expect(issuedAt - notBefore).toBeGreaterThanOrEqual(5 * 60_000 - 1000);
    expect(issuedAt - notBefore).toBeLessThanOrEqual(5 * 60_000 + 1000);
  });

  it('refuses a certificate that is not the Device CA’s, expired or not, and a stranger with a device CN', async () => {
    // A self-signed "expired" certificate claiming a device CN: TLS reports a different error; never a certificate.
    await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'stranger.key', '-out', 'stranger.crt', '-days', '1', '-subj', '/CN=acme\\/scooter']);
    const res = await curl('simplereenroll', { cert: 'stranger', csr: await csr('stranger-next') });
    expect(res.status).toBe(403);
  });
});
