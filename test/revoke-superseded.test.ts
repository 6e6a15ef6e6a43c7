/**
 * Issue 21.6: with renewal policy `revoke_superseded: false` a device renewal leaves the
 * certificate it replaced to expire instead of revoking it (superseded is not compromised), so
 * with short-lived certificates the CRL holds only real revocations. The replaced certificate
 * can renew nothing more (403 CERTIFICATE_SUPERSEDED, audited, nothing issued); the grace period
 * ending does not revoke it either; a real revocation still lists it; the default (true) keeps
 * revoking (test/est.test.ts). Real EST with curl and openssl, on Postgres (oneDriver, test/support/databases.ts).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { HOUR_MS } from '../src/domain/clock.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const exec = promisify(execFile);
const pemToDer = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

describe.each(oneDriver('pg'))('revoke_superseded false on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  let estUrl: string;
  let combinedCa: string;
  const file = (name: string) => path.join(dir, name);
  const openssl = async (args: string[]) => (await exec('openssl', args, { cwd: dir })).stdout;

  async function curl(pathPart: string, options: { cert: string; csr?: string }) {
    const args = ['-sS', '--cacert', combinedCa, '-o', '-', '-w', '\n%{http_code}', '--cert', file(`${options.cert}.crt`), '--key', file(`${options.cert}.key`)];
    if (options.csr) args.push('-H', 'Content-Type: application/pkcs10', '--data-binary', `@${file(options.csr)}`);
    const { stdout } = await exec('curl', [...args, `${estUrl}/${pathPart}`]);
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }
  async function csr(name: string) {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=x', '-outform', 'DER', '-out', `${name}.csr.der`]);
    await openssl(['base64', '-in', `${name}.csr.der`, '-out', `${name}.csr`]);
    return `${name}.csr`;
  }
  async function saveCert(body: string, name: string) {
    await writeFile(file(`${name}.p7.b64`), body);
    await openssl(['base64', '-d', '-in', `${name}.p7.b64`, '-out', `${name}.p7`]);
    const pem = (await openssl(['pkcs7', '-inform', 'DER', '-in', `${name}.p7`, '-print_certs'])).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/)![0];
    await writeFile(file(`${name}.crt`), pem);
  }
  async function issue(deviceId: string, name: string) {
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: deviceId })).status).toBe(201);
    const res = await t.call('acme', 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 });
    expect(res.status).toBe(201);
    await writeFile(file(`${name}.crt`), res.json.cert_pem);
    await writeFile(file(`${name}.key`), res.json.private_key_pem, { mode: 0o600 });
    return res.json.certificate as { id: number; serial_number: string };
  }
  const certificate = async (id: number) => (await t.call('acme', 'GET', `/customer/certificates/${id}`)).json.certificate;
  const count = async (deviceId: string) => (await t.call('acme', 'GET', `/customer/certificates?device_id=${deviceId}`)).json.total as number;
  const onCrl = async (serialHex: string) => pemToDer(await readFile(t.config.crlOutputPath, 'utf8')).includes(Buffer.from(serialHex.padStart(40, '0'), 'hex'));

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'certfleet-superseded-'));
    database = await createTestDatabase(kind);
    const brokerDir = path.join(dir, 'broker');
    t = await startTestService(database, {
      env: { EST_PORT: '0', EST_HOST: '127.0.0.1', EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'), EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key') },
    });
    const broker = await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: t.service.ca.ca!.certPem, crlPath: t.config.crlOutputPath });
    combinedCa = broker.files.combinedCa;
    const { est } = await t.service.renewal.start(t.service.app.log);
    estUrl = est!.replace('127.0.0.1', 'localhost');
  });

  afterAll(async () => {
    await t?.close();
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the policy field: default true, false accepted by a tenant-admin and audited, anything else 422', async () => {
    expect((await t.call('acme', 'GET', '/customer/renewal-policy')).json.revoke_superseded).toBe(true);
    const bad = await t.call('acme', 'PUT', '/customer/renewal-policy', { revoke_superseded: 'no' }, 'tenant-admin');
    expect(bad.status).toBe(422);
    expect(bad.headers['content-type']).toContain('application/problem+json');
    const put = await t.call('acme', 'PUT', '/customer/renewal-policy', { revoke_superseded: false, validity_days: 30 }, 'tenant-admin');
    expect(put.status, put.body).toBe(200);
    expect(put.json).toMatchObject({ revoke_superseded: false, validity_days: 30 });
    const audit = await t.call('acme', 'GET', '/customer/audit-events?action=renewal_policy.updated');
    expect(audit.json.audit_events[0].details.after.revoke_superseded).toBe(false);
  });

  it('a confirmed renewal leaves the old certificate ACTIVE and off the CRL; it can renew nothing more', async () => {
    const old = await issue('dev-1', 'd1-old');
    const renewed = await curl('simplereenroll', { cert: 'd1-old', csr: await csr('d1-new') });
    expect(renewed.status, renewed.body).toBe(200);
    await saveCert(renewed.body, 'd1-new');
    // Using the new certificate confirms the rotation: nothing is revoked.
    expect((await curl('cacerts', { cert: 'd1-new' })).status).toBe(200);
    const rotation = await database.db.asOperator((tx) =>
      tx.query<{ status: string; revoke_old: boolean; confirmed_via: string }>('SELECT status, revoke_old, confirmed_via FROM certificate_rotations WHERE old_certificate_id = $1', [old.id]),
    );
    expect(rotation.rows).toEqual([{ status: 'COMPLETED', revoke_old: false, confirmed_via: 'est' }]);
    const after = await certificate(old.id);
    expect(after.status).toBe('ACTIVE');
    expect(after.revoked_at ?? null).toBeNull();
    const superseded = await t.call('acme', 'GET', '/customer/audit-events?action=certificate.superseded');
    expect(superseded.json.audit_events.some((e: { target_id: string }) => e.target_id === String(old.id))).toBe(true);

    // The replaced certificate cannot renew again (a stolen old key mints nothing), audited.
    const before = await count('dev-1');
    const again = await curl('simplereenroll', { cert: 'd1-old', csr: await csr('d1-thief') });
    expect(again.status).toBe(403);
    expect(JSON.parse(again.body).code).toBe('CERTIFICATE_SUPERSEDED');
    expect(await count('dev-1')).toBe(before);
    const refused = await t.call('acme', 'GET', '/customer/audit-events?action=certificate.renewal_refused');
    expect(refused.json.audit_events[0].details.code).toBe('CERTIFICATE_SUPERSEDED');
    // The new certificate renews as usual.
    expect((await curl('simplereenroll', { cert: 'd1-new', csr: await csr('d1-next') })).status).toBe(200);

    // A real revocation still reaches the CRL; the superseded certificate is not on it.
    const victim = await issue('dev-2', 'd2');
    expect((await t.call('acme', 'POST', `/customer/certificates/${victim.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await t.service.crl.publisher!.idle();
    expect(await onCrl(victim.serial_number)).toBe(true);
    expect(await onCrl(old.serial_number)).toBe(false);
    // And revoking the superseded certificate for a reason works (nothing makes it un-revocable).
    expect((await t.call('acme', 'POST', `/customer/certificates/${old.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    await t.service.crl.publisher!.idle();
    expect(await onCrl(old.serial_number)).toBe(true);
  });

  it('an unconfirmed renewal whose grace period ends completes without revoking', async () => {
    const old = await issue('dev-3', 'd3-old');
    expect((await curl('simplereenroll', { cert: 'd3-old', csr: await csr('d3-new') })).status).toBe(200);
    t.clock.advance(25 * HOUR_MS);
    const tick = await t.service.useCases.applyScheduledRevocations();
    expect(tick.revoked).toBe(0);
    expect(tick.completed).toBeGreaterThanOrEqual(1);
    expect((await certificate(old.id)).status).toBe('ACTIVE');
    expect((await curl('simplereenroll', { cert: 'd3-old', csr: await csr('d3-late') })).status).toBe(403);
  });
});
