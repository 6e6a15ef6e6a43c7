/**
 * EST (RFC 7030) end to end with the clients the RFC's examples use: curl over mutual TLS and
 * openssl for CSRs and the PKCS#7 answers. Renewal creates a rotation like POST .../rotate with
 * a CSR, retries are idempotent, using the new certificate confirms the rotation, and a revoked,
 * expired or unknown certificate, a garbage or weak CSR, and a used or expired enrollment token
 * never get a certificate.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { DAY_MS, HOUR_MS } from '../src/domain/clock.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const exec = promisify(execFile);

interface Curl {
  status: number;
  body: string;
}

describe.each(oneDriver('pg'))('EST on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  let estUrl: string;
  let combinedCa: string;
  let deviceCaFile: string;

  const file = (name: string) => path.join(dir, name);

  async function openssl(args: string[]): Promise<string> {
    const { stdout } = await exec('openssl', args, { cwd: dir });
    return stdout;
  }

  /** curl as a device: the client certificate is optional (simpleenroll uses Basic auth). */
  async function curl(pathPart: string, options: { cert?: string; csr?: string; user?: string; contentType?: string } = {}): Promise<Curl> {
    const args = ['-sS', '--cacert', combinedCa, '-o', '-', '-w', '\n%{http_code}'];
    if (options.cert) args.push('--cert', file(`${options.cert}.crt`), '--key', file(`${options.cert}.key`));
    if (options.user) args.push('--user', options.user);
    if (options.csr !== undefined) args.push('-H', `Content-Type: ${options.contentType ?? 'application/pkcs10'}`, '--data-binary', `@${file(options.csr)}`);
    const { stdout } = await exec('curl', [...args, `${estUrl}/${pathPart}`]);
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }

  /** A CSR made by openssl as a device would, base64 DER as RFC 7030 sends it. */
  async function csr(name: string, keySpec: 'ec' | 'rsa1024' = 'ec'): Promise<string> {
    const genKey = keySpec === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:1024'];
    await openssl(['req', '-new', ...genKey, '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=anything/O=device', '-outform', 'DER', '-out', `${name}.csr.der`]);
    await openssl(['base64', '-in', `${name}.csr.der`, '-out', `${name}.csr`]);
    return `${name}.csr`;
  }

  /** The certificate in an EST certs-only answer, written to `${name}.crt`. */
  async function saveCert(body: string, name: string): Promise<string> {
    await writeFile(file(`${name}.p7.b64`), body);
    await openssl(['base64', '-d', '-in', `${name}.p7.b64`, '-out', `${name}.p7`]);
    const pem = await openssl(['pkcs7', '-inform', 'DER', '-in', `${name}.p7`, '-print_certs']);
    const cert = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
    await writeFile(file(`${name}.crt`), cert);
    return cert;
  }

  async function issue(deviceId: string, name: string, validityDays = 30): Promise<{ id: number }> {
    const res = await t.call('acme', 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: validityDays });
    expect(res.status).toBe(201);
    await writeFile(file(`${name}.crt`), res.json.cert_pem);
    await writeFile(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
    return { id: res.json.certificate.id };
  }

  const certificate = async (id: number) => (await t.call('acme', 'GET', `/customer/certificates/${id}`)).json.certificate;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'certfleet-est-'));
    database = await createTestDatabase(kind);
    // The EST listener serves the broker's server certificate: devices already trust it (combined-ca.crt).
    const brokerDir = path.join(dir, 'broker');
    t = await startTestService(database, {
      env: { EST_PORT: '0', EST_HOST: '127.0.0.1', EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'), EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key') },
    });
    const broker = await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: t.service.ca.ca!.certPem, crlPath: t.config.crlOutputPath });
    combinedCa = broker.files.combinedCa;
    deviceCaFile = broker.files.deviceCaCert;
    const { est } = await t.service.renewal.start(t.service.app.log);
    estUrl = est!.replace('127.0.0.1', 'localhost');
    for (const id of ['dev-1', 'dev-2', 'dev-3', 'dev-4']) {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
    }
  });

  afterAll(async () => {
    await t?.close();
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the Device CA as base64 certs-only PKCS#7 at /cacerts', async () => {
    const res = await curl('cacerts');
    expect(res.status).toBe(200);
    const cert = await saveCert(res.body, 'cacerts');
    expect(cert.replace(/\s/g, '')).toBe(t.service.ca.ca!.certPem.replace(/\s/g, ''));
  });

  it('renews with the current certificate, idempotently; using the new certificate confirms the rotation', async () => {
    const old = await issue('dev-1', 'dev1-old');
    const request = await csr('dev1-new');
    const res = await curl('simplereenroll', { cert: 'dev1-old', csr: request });
    expect(res.status, res.body).toBe(200);
    const newPem = await saveCert(res.body, 'dev1-new');

    // CN forced to tenant/device, chains to the Device CA, carries the CSR's key.
    expect(await openssl(['x509', '-in', 'dev1-new.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*acme\/dev-1/);
    expect(await openssl(['verify', '-CAfile', deviceCaFile, '-purpose', 'sslclient', 'dev1-new.crt'])).toContain('OK');
    expect(await openssl(['x509', '-in', 'dev1-new.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'dev1-new.key', '-pubout']));

    // A rotation like POST .../rotate: the old certificate stays ACTIVE with a schedule (tenant's grace period).
    const rotation = await t.call('acme', 'GET', '/customer/devices/dev-1/certificates/rotation');
    expect(rotation.status).toBe(200);
    const before = await certificate(old.id);
    expect(before.status).toBe('ACTIVE');
    expect(Date.parse(before.scheduled_revoke_at) - t.clock.now().getTime()).toBeGreaterThan(23 * HOUR_MS);

    // A retry of the same request gets the same certificate; another key gets 409.
    const again = await curl('simplereenroll', { cert: 'dev1-old', csr: request });
    expect(again.status).toBe(200);
    expect(await saveCert(again.body, 'dev1-again')).toBe(newPem);
    const other = await curl('simplereenroll', { cert: 'dev1-old', csr: await csr('dev1-other') });
    expect(other.status).toBe(409);
    expect(JSON.parse(other.body).code).toBe('ROTATION_PENDING');

    // The device uses its new certificate: the old one is revoked as superseded, and the rotation says how.
    expect((await curl('cacerts', { cert: 'dev1-new' })).status).toBe(200);
    const after = await certificate(old.id);
    expect(after.status).toBe('REVOKED');
    expect(after.revoked_reason).toMatch(/superseded|rotated/);
    const { rows } = await database.db.asOperator((tx) =>
      tx.query<{ confirmed_via: string; started_by: string }>('SELECT confirmed_via, started_by FROM certificate_rotations WHERE old_certificate_id = $1', [old.id]),
    );
    expect(rows).toEqual([{ confirmed_via: 'est', started_by: 'device:acme/dev-1' }]);

    // The revoked old certificate gets no certificate any more.
    const refused = await curl('simplereenroll', { cert: 'dev1-old', csr: await csr('dev1-late') });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).detail).toMatch(/revoked/);
  });

  it('refuses an unknown certificate, no certificate, a garbage CSR and a weak key', async () => {
    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'stranger.key', '-out', 'stranger.crt',
      '-days', '2', '-subj', '/CN=acme\\/dev-2',
    ]);
    const request = await csr('dev2-new');
    const stranger = await curl('simplereenroll', { cert: 'stranger', csr: request });
    expect(stranger.status).toBe(403);
    const anonymous = await curl('simplereenroll', { csr: request });
    expect(anonymous.status).toBe(401);

    await issue('dev-2', 'dev2');
    await writeFile(file('garbage.csr'), 'this is not base64 DER!');
    const garbage = await curl('simplereenroll', { cert: 'dev2', csr: 'garbage.csr' });
    expect(garbage.status).toBe(422);
    expect(JSON.parse(garbage.body).code).toBe('INVALID_CSR');
    const weak = await curl('simplereenroll', { cert: 'dev2', csr: await csr('dev2-weak', 'rsa1024') });
    expect(weak.status).toBe(422);
    expect(JSON.parse(weak.body).code).toBe('WEAK_KEY');
    expect((await t.call('acme', 'GET', '/customer/devices/dev-2/certificates/rotation')).status).toBe(404);
  });

  // Issue 21 item 7: a refused renewal leaves an audit event with the presenting certificate's
  // identity (a CSR refusal, a pending rotation for another key, a revoked certificate left none).
  it('audits every refused renewal with the presenting certificate, issues nothing', async () => {
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'dev-5' })).status).toBe(201);
    const current = await issue('dev-5', 'dev5');
    const fingerprint = (await certificate(current.id)).fingerprint_sha256;
    const compromised = await issue('dev-4', 'dev4-compromised');
    expect((await t.call('acme', 'POST', `/customer/certificates/${compromised.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await openssl(['req', '-new', '-key', 'dev4-compromised.key', '-subj', '/CN=x', '-outform', 'DER', '-out', 'compromised.csr.der']);
    await openssl(['base64', '-in', 'compromised.csr.der', '-out', 'compromised.csr']);
    await writeFile(file('garbage5.csr'), 'this is not base64 DER!');
    const count = async () => Number((await t.call('acme', 'GET', '/customer/certificates?device_id=dev-5')).json.total);
    const before = await count();

    const expectCode = async (res: Curl, status: number, code: string) => {
      expect(res.status, res.body).toBe(status);
      expect(JSON.parse(res.body).code).toBe(code);
    };
    await expectCode(await curl('simplereenroll', { cert: 'dev5', csr: 'garbage5.csr' }), 422, 'INVALID_CSR');
    await expectCode(await curl('simplereenroll', { cert: 'dev5', csr: await csr('dev5-weak', 'rsa1024') }), 422, 'WEAK_KEY');
    await expectCode(await curl('simplereenroll', { cert: 'dev5', csr: 'compromised.csr' }), 422, 'KEY_COMPROMISED');
    expect(await count()).toBe(before);
    expect((await curl('simplereenroll', { cert: 'dev5', csr: await csr('dev5-next') })).status).toBe(200);
    await expectCode(await curl('simplereenroll', { cert: 'dev5', csr: await csr('dev5-other') }), 409, 'ROTATION_PENDING');
    // The device uses its new certificate: the old one is revoked, and refused (audited) from then on.
    await saveCert((await curl('simplereenroll', { cert: 'dev5', csr: 'dev5-next.csr' })).body, 'dev5-next');
    expect((await curl('cacerts', { cert: 'dev5-next' })).status).toBe(200);
    await expectCode(await curl('simplereenroll', { cert: 'dev5', csr: await csr('dev5-late') }), 403, 'FORBIDDEN');
    expect(await count()).toBe(before + 1);

    const events = (await t.call('acme', 'GET', '/customer/audit-events?action=certificate.renewal_refused&limit=500')).json.audit_events as {
      actor: string;
      target_id: string;
      details: Record<string, unknown>;
    }[];
    const mine = events.filter((e) => e.target_id === String(current.id));
    expect(mine.map((e) => e.details.code).sort()).toEqual(['FORBIDDEN', 'INVALID_CSR', 'KEY_COMPROMISED', 'ROTATION_PENDING', 'WEAK_KEY']);
    for (const event of mine) {
      expect(event).toMatchObject({ actor: 'device:acme/dev-5', details: { transport: 'est', device_id: 'dev-5', certificate_id: current.id, fingerprint_sha256: fingerprint } });
    }
    expect(mine.find((e) => e.details.code === 'FORBIDDEN')!.details.reason).toMatch(/revoked/);
  });

  // The listener's TLS checks validity on the real clock, certfleet's records on the injected one:
  // this certificate is valid for TLS and expired for certfleet.
  it('refuses an expired certificate', async () => {
    await issue('dev-2', 'dev2-short', 1);
    t.clock.advance(2 * DAY_MS);
    const res = await curl('simplereenroll', { cert: 'dev2-short', csr: await csr('dev2-next') });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).detail).toMatch(/expired/);
      });

  // Red-team finding: a plain `customer` could mint device credentials, and nothing recorded it.
  it('creating an enrollment token needs the tenant-admin role and writes an audit event (never the token)', async () => {
    const tokens = () =>
      database.db.asOperator(async (tx) => Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM enrollment_tokens WHERE tenant_id = 'acme' AND device_id = 'dev-4'`)).rows[0].n));
    const before = await tokens();
    const refused = await t.call('acme', 'POST', '/customer/devices/dev-4/enrollment-tokens', { expires_in_hours: 2 }, 'customer');
    expect(refused.status).toBe(403);
    expect(refused.json.code).toBe('FORBIDDEN');
    expect(refused.json.detail).toMatch(/tenant-admin/);
    expect(await tokens()).toBe(before);

    const created = await t.call('acme', 'POST', '/customer/devices/dev-4/enrollment-tokens', { expires_in_hours: 2 }, 'tenant-admin');
    expect(created.status).toBe(201);
    expect(await tokens()).toBe(before + 1);
    const audit = await t.call('acme', 'GET', '/customer/audit-events?action=enrollment_token.created');
    expect(audit.status).toBe(200);
    const event = audit.json.audit_events.find((e: { details: { enrollment_token_id?: number } }) => e.details.enrollment_token_id === created.json.enrollment_token.id);
    expect(event).toMatchObject({
      tenant_id: 'acme',
      actor: 'test:acme:tenant-admin',
      action: 'enrollment_token.created',
      target_type: 'device',
      target_id: 'dev-4',
      details: { enrollment_token_id: created.json.enrollment_token.id, expires_at: created.json.enrollment_token.expires_at },
    });
    expect(JSON.stringify(audit.json)).not.toContain(created.json.token);
    // Refused attempts leave no event.
    expect(audit.json.audit_events.filter((e: { target_id: string }) => e.target_id === 'dev-4')).toHaveLength(1);
  });

  it('first enrollment with a one-time token: used once, never after expiry, never for another device', async () => {
    const created = await t.call('acme', 'POST', '/customer/devices/dev-3/enrollment-tokens', { expires_in_hours: 2 }, 'tenant-admin');
    expect(created.status).toBe(201);
    const { token, username } = created.json;
    expect(username).toBe('acme/dev-3');
    expect(JSON.stringify(await t.call('acme', 'GET', '/customer/certificates?device_id=dev-3'))).not.toContain(token);
    expect((await t.call('other', 'POST', '/customer/devices/dev-3/enrollment-tokens', {}, 'tenant-admin')).status).toBe(404);

    const wrongDevice = await curl('simpleenroll', { user: `acme/dev-4:${token}`, csr: await csr('dev4-first') });
    expect(wrongDevice.status).toBe(401);
    const first = await curl('simpleenroll', { user: `${username}:${token}`, csr: await csr('dev3-first') });
    expect(first.status, first.body).toBe(200);
    await saveCert(first.body, 'dev3-first');
    expect(await openssl(['x509', '-in', 'dev3-first.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*acme\/dev-3/);
    const replayed = await curl('simpleenroll', { user: `${username}:${token}`, csr: await csr('dev3-replay') });
    expect(replayed.status).toBe(401);
    expect((await curl('simpleenroll', { csr: await csr('dev3-none') })).status).toBe(401);

    const late = (await t.call('acme', 'POST', '/customer/devices/dev-4/enrollment-tokens', { expires_in_hours: 1 }, 'tenant-admin')).json.token;
    t.clock.advance(2 * HOUR_MS);
    expect((await curl('simpleenroll', { user: `acme/dev-4:${late}`, csr: await csr('dev4-late') })).status).toBe(401);
  });

  // Issue 21 item 2: the tenant's renewal policy sets the lifetime of what EST enrollment issues
  // (it used to be 365 days whatever the policy), never past the Device CA's notAfter.
  it("first enrollment with a token issues the tenant's validity_days, capped at the CA's notAfter", async () => {
    const enrollOne = async (deviceId: string) => {
      expect((await t.call('beta', 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
      const { token, username } = (await t.call('beta', 'POST', `/customer/devices/${deviceId}/enrollment-tokens`, { expires_in_hours: 2 }, 'tenant-admin')).json;
      const res = await curl('simpleenroll', { user: `${username}:${token}`, csr: await csr(`${deviceId}-first`) });
      expect(res.status, res.body).toBe(200);
      return new X509Certificate(await saveCert(res.body, `${deviceId}-first`));
    };
    expect((await t.call('beta', 'PUT', '/customer/renewal-policy', { validity_days: 30 }, 'tenant-admin')).status).toBe(200);
    const signedAt = t.clock.now().getTime();
    const short = await enrollOne('b-1');
    expect(Math.abs(Date.parse(short.validTo) - (signedAt + 30 * DAY_MS))).toBeLessThan(5_000);

    // A validity that would outlive the Device CA ends with the CA.
    expect((await t.call('beta', 'PUT', '/customer/renewal-policy', { validity_days: 3650 }, 'tenant-admin')).status).toBe(200);
    t.clock.advance(30 * DAY_MS);
    const capped = await enrollOne('b-2');
    expect(capped.validTo).toBe(new X509Certificate(t.service.ca.ca!.certPem).validTo);
  });

});
