/**
 * Factory (claim) onboarding end to end, with the device played by openssl and curl: a tenant
 * registers its manufacturer's CA certificate (never its key) and a provisioning policy; a device
 * presenting a claim certificate of that CA as TLS client certificate at
 * /.well-known/est/<tenant>/simpleenroll gets registered and receives its first operational
 * certificate for the key of its CSR. Every refusal (unregistered CA, expired or revoked claim,
 * claim not admitted, CSR for the claim key or a compromised key, invalid device id, a claim used
 * for a second device id, a replayed signed request, the approval webhook refusing or not
 * answering) has its own error code, is audited, and issues nothing.
 */
import { execFile } from 'node:child_process';
import { createHmac, createPrivateKey, sign as signData, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { DAY_MS } from '../src/domain/clock.ts';
import { REFUSAL_AUDIT_BURST } from '../src/domain/refusal-audit-budget.ts';
import { AppError } from '../src/domain/errors.ts';
import { deriveDeviceId, validateProvisioningPolicy } from '../src/domain/provisioning-policy.ts';
import { PROVISIONING_SIGNATURE_WINDOW_MS, provisioningSigningText } from '../src/renewal/claim-onboarding.ts';
import { boundedCapture, RegexTimeoutError } from '../src/support/bounded-regex.ts';
import { scaled } from './support/timeouts.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const exec = promisify(execFile);

interface Curl {
  status: number;
  body: string;
}

/** A tenant's approval endpoint: answers each path as told (JSON), or never. */
async function startApprover() {
  const answers = new Map<string, { status: number; body: unknown } | 'hang'>();
  const received: { path: string; headers: IncomingHttpHeaders; raw: string }[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const p = request.url ?? '/';
      received.push({ path: p, headers: request.headers, raw: Buffer.concat(chunks).toString('utf8') });
      const answer = answers.get(p) ?? { status: 200, body: { approved: true } };
      if (answer === 'hang') return;
      response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (p: string) => `http://127.0.0.1:${port}${p}`,
    answer: (p: string, a: { status: number; body: unknown } | 'hang') => void answers.set(p, a),
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe.each(oneDriver('pglite'))('factory (claim) onboarding on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  let estBase: string;
  let combinedCa: string;
  let deviceCaFile: string;
  let approver: Awaited<ReturnType<typeof startApprover>>;

  const file = (name: string) => path.join(dir, name);
  const admin = 'tenant-admin' as const;

  async function openssl(args: string[]): Promise<string> {
    const { stdout } = await exec('openssl', args, { cwd: dir });
    return stdout;
  }

  /** curl as a device at the tenant's EST label, with its claim certificate as TLS client certificate. */
  async function enroll(tenant: string, claim: string | null, csrFile: string): Promise<Curl> {
    const args = ['-sS', '--cacert', combinedCa, '-o', '-', '-w', '\n%{http_code}', '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${file(csrFile)}`];
    if (claim) args.push('--cert', file(`${claim}.crt`), '--key', file(`${claim}.key`));
    const { stdout } = await exec('curl', [...args, `${estBase}/${tenant}/simpleenroll`]);
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }

  async function curlReenroll(cert: string, csrFile: string): Promise<Curl> {
    const args = ['-sS', '--cacert', combinedCa, '-o', '-', '-w', '\n%{http_code}', '-H', 'Content-Type: application/pkcs10', '--data-binary', `@${file(csrFile)}`];
    args.push('--cert', file(`${cert}.crt`), '--key', file(`${cert}.key`));
    const { stdout } = await exec('curl', [...args, `${estBase}/simplereenroll`]);
    const cut = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
  }

  /** A new EC key `${name}.key` and its CSR, base64 DER as RFC 7030 sends it. */
  async function csr(name: string, existingKey?: string): Promise<string> {
    const key = existingKey ? ['-key', `${existingKey}.key`] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`];
    await openssl(['req', '-new', ...key, '-subj', '/CN=whatever', '-outform', 'DER', '-out', `${name}.csr.der`]);
    await openssl(['base64', '-in', `${name}.csr.der`, '-out', `${name}.csr`]);
    return `${name}.csr`;
  }

  /** A self-signed CA `${name}.crt`/`${name}.key` (a manufacturer's). */
  async function makeCa(name: string, subject: string) {
    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3650',
      '-subj', subject, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }

  /** A claim certificate `${name}.crt` issued by `ca`, as a factory would burn it into a device. */
  async function makeClaim(name: string, ca: string, cn: string, options: { days?: number; serial?: string; san?: string } = {}) {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', `/CN=${cn}/O=Manufacturer`, '-out', `${name}.req`]);
    const ext = `${name}.ext`;
    await writeFile(file(ext), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n${options.san ? `subjectAltName=${options.san}\n` : ''}`);
    await openssl([
      'x509', '-req', '-in', `${name}.req`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-days', String(options.days ?? 365), '-sha256',
      '-set_serial', options.serial ?? `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`, '-extfile', ext, '-out', `${name}.crt`,
    ]);
    // openssl dates the claim from the real clock; the service's manual clock was set when it started.
    // On a busy machine minutes can pass in between, more than the allowed skew: never let the service's
    // clock lag behind a claim just minted (it only moves forward, so the expiry test's jump stays).
    const service = t as TestService | undefined;
    if (service && service.clock.now().getTime() < Date.now()) service.clock.set(new Date());
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

  const certificateCount = async () =>
    database.db.asOperator(async (tx) => Number((await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM device_certificates WHERE tenant_id = 'acme'`)).rows[0].n));

  const refusals = async () =>
    (await t.call('acme', 'GET', '/customer/audit-events?action=claim.enrollment_refused&limit=500')).json.audit_events as { details: Record<string, unknown>; target_id: string }[];

  /** A refused enrollment: the status and code, nothing issued, and an audit event naming the code. */
  async function expectRefused(res: Curl, status: number, code: string, before: number) {
    expect(res.status, res.body).toBe(status);
    const problem = JSON.parse(res.body);
    expect(problem.code).toBe(code);
    expect(await certificateCount()).toBe(before);
    expect((await refusals()).some((e) => e.details.code === code)).toBe(true);
    return problem;
  }

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'certfleet-claim-'));
    database = await createTestDatabase(kind);
    const brokerDir = path.join(dir, 'broker');
    t = await startTestService(database, {
      env: {
        EST_PORT: '0',
        EST_HOST: '127.0.0.1',
        EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'),
        EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key'),
        WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
      },
    });
    const broker = await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: t.service.ca.ca!.certPem, crlPath: t.config.crlOutputPath });
    combinedCa = broker.files.combinedCa;
    deviceCaFile = broker.files.deviceCaCert;
    const { est } = await t.service.renewal.start(t.service.app.log);
    estBase = est!.replace('127.0.0.1', 'localhost');
    approver = await startApprover();

    await makeCa('mfr', '/CN=Acme Manufacturing Claim CA/O=Acme Manufacturing');
    await makeCa('rogue', '/CN=Rogue CA');
    await writeFile(file('ca.cnf'), ['[ca]', 'default_ca = mfr', '[mfr]', 'database = index.txt', 'crlnumber = crlnumber', 'default_md = sha256', 'default_crl_days = 30', 'certificate = mfr.crt', 'private_key = mfr.key', ''].join('\n'));
    await writeFile(file('index.txt'), '');
    await writeFile(file('crlnumber'), '01\n');
  });

  afterAll(async () => {
    await approver?.close();
    await t?.close();
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('registers a claim CA: tenant-admin only, a CA certificate only, never a key; audited', async () => {
    const mfrPem = await readFile(file('mfr.crt'), 'utf8');
    const asCustomer = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrPem });
    expect(asCustomer.status).toBe(403);

    // A leaf (no basicConstraints cA) is not a CA.
    await makeClaim('leaf', 'mfr', 'not-a-ca');
    const leaf = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: await readFile(file('leaf.crt'), 'utf8') }, admin);
    expect(leaf.status).toBe(422);
    expect(leaf.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(leaf.json.code).toBe('INVALID_CERTIFICATE');

    const withKey = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrPem + (await readFile(file('mfr.key'), 'utf8')) }, admin);
    expect(withKey.status).toBe(422);
    expect(withKey.json.detail).toMatch(/private key/);
    expect((await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: 'garbage' }, admin)).json.code).toBe('INVALID_CERTIFICATE');
    expect((await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: t.service.ca.ca!.certPem }, admin)).status).toBe(422);

    // A CRL signed by another CA is refused.
    await writeFile(file('rogue.cnf'), (await readFile(file('ca.cnf'), 'utf8')).replace('mfr.crt', 'rogue.crt').replace('mfr.key', 'rogue.key'));
    await openssl(['ca', '-config', 'rogue.cnf', '-gencrl', '-out', 'rogue.crl']);
    const badCrl = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrPem, crl_pem: await readFile(file('rogue.crl'), 'utf8') }, admin);
    expect(badCrl.status).toBe(422);
    expect(badCrl.json.code).toBe('INVALID_CRL');

    const created = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrPem, name: 'Acme Manufacturing' }, admin);
    expect(created.status, created.body).toBe(201);
    expect(created.json.claim_ca).toMatchObject({ name: 'Acme Manufacturing', subject: expect.stringContaining('Acme Manufacturing Claim CA'), crl: null });
    const again = await t.call('acme', 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: mfrPem }, admin);
    expect(again.status).toBe(409);
    expect(again.json.code).toBe('CLAIM_CA_EXISTS');

    const list = await t.call('acme', 'GET', '/api/v1/customer/claim-cas');
    expect(list.json.claim_cas).toHaveLength(1);
    expect((await t.call('globex', 'GET', '/api/v1/customer/claim-cas')).json.claim_cas).toHaveLength(0);
    expect((await t.call('globex', 'GET', `/api/v1/customer/claim-cas/${created.json.claim_ca.id}`)).status).toBe(404);
    const audit = await t.call('acme', 'GET', '/customer/audit-events?action=claim_ca.created');
    expect(audit.json.audit_events).toHaveLength(1);
    expect(audit.json.audit_events[0]).toMatchObject({ actor: 'test:acme:tenant-admin', target_type: 'claim_ca', target_id: String(created.json.claim_ca.id) });
  });

  it("the EST listener's TLS certificate request names the claim CAs besides the Device CA", async () => {
    const { hostname, port } = new URL(estBase);
    const acceptable = async () => {
      // s_client exits after the handshake (stdin closed); its report lists the CA names the server asked for.
      const stdout = await new Promise<string>((resolve) => {
        const child = execFile('openssl', ['s_client', '-connect', `${hostname}:${port}`, '-servername', hostname, '-CAfile', combinedCa], { cwd: dir, timeout: 20_000 }, (_e, out) =>
          resolve(String(out ?? '')),
        );
        child.stdin?.end();
      });
      const start = stdout.indexOf('Acceptable client certificate CA names');
      return start < 0 ? '' : stdout.slice(start, stdout.indexOf('---', start));
    };
    const deadline = Date.now() + 20_000;
    let names = await acceptable();
    while (!names.includes('Acme Manufacturing Claim CA') && Date.now() < deadline) names = await acceptable();
    expect(names).toContain('Acme Manufacturing Claim CA');
    expect(names).not.toContain('Rogue CA');
  });

  it('onboards a device with its claim certificate: registered, first operational certificate for its own key', async () => {
    await makeClaim('claim-1', 'mfr', 'SN-0001');
    const request = await csr('op-1');
    const before = await certificateCount();
    const res = await enroll('acme', 'claim-1', request);
    expect(res.status, res.body).toBe(200);
    await saveCert(res.body, 'op-1');
    expect(await openssl(['x509', '-in', 'op-1.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*acme\/SN-0001/);
    expect(await openssl(['verify', '-CAfile', deviceCaFile, '-purpose', 'sslclient', 'op-1.crt'])).toContain('OK');
    expect(await openssl(['x509', '-in', 'op-1.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'op-1.key', '-pubout']));
    expect(await certificateCount()).toBe(before + 1);

    const device = await t.call('acme', 'GET', '/customer/devices/SN-0001');
    expect(device.status).toBe(200);
    const enrolled = (await t.call('acme', 'GET', '/customer/audit-events?action=claim.enrolled')).json.audit_events;
    expect(enrolled).toHaveLength(1);
    expect(enrolled[0]).toMatchObject({ target_type: 'device', target_id: 'SN-0001', details: { transport: 'est', registered: true, claim_subject: expect.stringContaining('SN-0001') } });

    // The same request again (a lost answer): the same certificate, nothing new.
    const retry = await enroll('acme', 'claim-1', request);
    expect(retry.status, retry.body).toBe(200);
    expect(await saveCert(retry.body, 'op-1-retry')).toBe(await readFile(file('op-1.crt'), 'utf8'));
    expect(await certificateCount()).toBe(before + 1);
    // Another key with the same claim: the device renews with its operational certificate instead.
    await expectRefused(await enroll('acme', 'claim-1', await csr('op-1-other')), 409, 'CLAIM_ALREADY_ENROLLED', before + 1);

    // The operational certificate is a real device certificate: it renews over EST.
    const renewed = await curlReenroll('op-1', await csr('op-1-next'));
    expect(renewed.status, renewed.body).toBe(200);
  });

  it('refuses a claim from an unregistered CA, no client certificate, another tenant, and a CSR for the claim key', async () => {
    const before = await certificateCount();
    await makeClaim('rogue-claim', 'rogue', 'SN-0666');
    await expectRefused(await enroll('acme', 'rogue-claim', await csr('rogue-op')), 403, 'CLAIM_CA_UNKNOWN', before);
    // A device certificate is not a claim certificate.
    expect(JSON.parse((await enroll('acme', 'op-1', await csr('op-1-as-claim'))).body).code).toBe('CLAIM_CA_UNKNOWN');

    const anonymous = await enroll('acme', null, await csr('anon'));
    expect(anonymous.status).toBe(401);

    // globex registered no claim CA: acme's claims onboard nothing there (and leave no trace in globex).
    await makeClaim('claim-2', 'mfr', 'SN-0002');
    const elsewhere = await enroll('globex', 'claim-2', await csr('op-2-globex'));
    expect(elsewhere.status).toBe(403);
    expect(JSON.parse(elsewhere.body).code).toBe('CLAIM_CA_UNKNOWN');
    expect((await t.call('globex', 'GET', '/customer/audit-events')).json.audit_events).toHaveLength(0);
    expect((await enroll('no-such-tenant!', 'claim-2', await csr('op-2-bad'))).status).toBe(403);

    await expectRefused(await enroll('acme', 'claim-2', await csr('claim-2-key', 'claim-2')), 422, 'CLAIM_KEY_REUSED', before);
    expect((await t.call('acme', 'GET', '/customer/devices/SN-0002')).status).toBe(404);
  });

  it('refuses a revoked claim (the CA\'s CRL), a claim the policy does not admit, and a derived device id that breaks the rules', async () => {
    const before = await certificateCount();
    await makeClaim('claim-revoked', 'mfr', 'SN-0003');
    await openssl(['ca', '-config', 'ca.cnf', '-revoke', 'claim-revoked.crt', '-crl_reason', 'keyCompromise']);
    await openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'mfr.crl']);
    const id = (await t.call('acme', 'GET', '/api/v1/customer/claim-cas')).json.claim_cas[0].id;
    expect((await t.call('acme', 'PUT', `/api/v1/customer/claim-cas/${id}/crl`, { crl_pem: await readFile(file('mfr.crl'), 'utf8') })).status).toBe(403);
    const crl = await t.call('acme', 'PUT', `/api/v1/customer/claim-cas/${id}/crl`, { crl_pem: await readFile(file('mfr.crl'), 'utf8') }, admin);
    expect(crl.status, crl.body).toBe(200);
    expect(crl.json.claim_ca.crl.entries).toBe(1);
    await expectRefused(await enroll('acme', 'claim-revoked', await csr('op-revoked')), 403, 'CLAIM_CERT_REVOKED', before);

    const policy = await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { admit: { cn_patterns: ['SN-*'] }, site_id: 'factory-7' }, admin);
    expect(policy.status, policy.body).toBe(200);
    expect(policy.json).toMatchObject({ default: false, policy: { admit: { cn_patterns: ['SN-*'], serials: [] }, device_id: { from: 'cn', pattern: null }, site_id: 'factory-7' } });
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { admit: { cn_patterns: ['*'] } })).status).toBe(403);
    const badRegex = await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { device_id: { from: 'cn', pattern: '^(SN-' } }, admin);
    expect(badRegex.status).toBe(422);
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { device_id: { from: 'cn', pattern: '^SN-.*$' } }, admin)).json.detail).toMatch(/capture group/);
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { device_id: { from: 'guid' } }, admin)).status).toBe(422);

    await makeClaim('claim-other', 'mfr', 'XX-0001');
    await expectRefused(await enroll('acme', 'claim-other', await csr('op-other')), 403, 'CLAIM_NOT_ADMITTED', before);
    await makeClaim('claim-badid', 'mfr', 'SN-has a space');
    await expectRefused(await enroll('acme', 'claim-badid', await csr('op-badid')), 422, 'INVALID_DEVICE_ID', before);

    // Admitted by serial and named by a SAN through a capture group: device id "unit-42", site from the policy.
    await makeClaim('claim-san', 'mfr', 'XX-0042', { serial: '0x0A0B0C', san: 'URI:urn:acme:device:unit-42' });
    expect(
      (await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', {
        admit: { cn_patterns: ['SN-*'], serials: ['0a:0b:0c'] },
        device_id: { from: 'san_uri', pattern: '^urn:acme:device:(.+)$' },
        site_id: 'factory-7',
      }, admin)).status,
    ).toBe(200);
    const bySan = await enroll('acme', 'claim-san', await csr('op-san'));
    expect(bySan.status, bySan.body).toBe(200);
    expect((await t.call('acme', 'GET', '/customer/devices/unit-42')).json.device.site_id).toBe('factory-7');
    expect(await certificateCount()).toBe(before + 1);
  });

  it('a claim certificate presented for a second device id is refused and raises CLAIM_CERT_SHARED', async () => {
    // claim-san onboarded unit-42; now the policy derives another id from the same claim (its CN).
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { admit: { serials: ['a0b0c'] } }, admin)).status).toBe(200);
    const before = await certificateCount();
    const problem = await expectRefused(await enroll('acme', 'claim-san', await csr('op-san-2')), 409, 'CLAIM_CERT_SHARED', before);
    expect(problem.detail).toMatch(/unit-42/);
    const alerts = await t.call('acme', 'GET', '/customer/alerts?type=CLAIM_CERT_SHARED');
    expect(alerts.status).toBe(200);
    expect(alerts.json.alerts).toHaveLength(1);
    expect(alerts.json.alerts[0]).toMatchObject({ device_id: 'unit-42', status: 'OPEN', details: { bound_device_id: 'unit-42', requested_device_id: 'XX-0042' } });
    expect((await t.call('acme', 'GET', '/customer/devices/XX-0042')).status).toBe(404);
  });

  it('refuses a CSR for a key revoked for keyCompromise', async () => {
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', {}, admin)).status).toBe(200);
    // The key served another device and was revoked for keyCompromise.
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'victim' })).status).toBe(201);
    await csr('stolen');
    const stolenPem = await openssl(['req', '-in', 'stolen.csr.der', '-inform', 'DER']);
    const issued = await t.call('acme', 'POST', '/customer/devices/victim/certificates/csr', { csr_pem: stolenPem });
    expect(issued.status, issued.body).toBe(201);
    expect((await t.call('acme', 'POST', `/customer/certificates/${issued.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
    const before = await certificateCount();
    await makeClaim('claim-5', 'mfr', 'SN-0005');
    await expectRefused(await enroll('acme', 'claim-5', 'stolen.csr'), 422, 'KEY_COMPROMISED', before);
    expect((await t.call('acme', 'GET', '/customer/devices/SN-0005')).status).toBe(404);
  });

  it('a signed (MQTT) provisioning request is refused when replayed', async () => {
    await makeClaim('claim-6', 'mfr', 'SN-0006');
    await csr('op-6');
    const csrPem = await openssl(['req', '-in', 'op-6.csr.der', '-inform', 'DER']);
    const claimDer = Buffer.from((await readFile(file('claim-6.crt'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const signedAt = Math.floor(t.clock.now().getTime() / 1000);
    const signature = signData('sha256', Buffer.from(provisioningSigningText('req-1', signedAt, csrPem)), createPrivateKey(await readFile(file('claim-6.key')))).toString('base64');
    const claims = t.service.renewal.claims;
    const first = await claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', { requestId: 'req-1', signedAt, signature });
    expect(first.device_id).toBe('SN-0006');
    const before = await certificateCount();
    await expect(claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', { requestId: 'req-1', signedAt, signature })).rejects.toMatchObject({ code: 'REPLAYED_REQUEST' });
    await expect(claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', { requestId: 'req-2', signedAt, signature })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(await certificateCount()).toBe(before);
    expect((await refusals()).some((e) => e.details.code === 'REPLAYED_REQUEST' && e.details.transport === 'mqtt')).toBe(true);
  });

  it('forgets a claim\'s signed requests once they are too old to be replayed (the table does not grow forever)', async () => {
    await makeClaim('claim-9', 'mfr', 'SN-0009');
    await csr('op-9');
    const csrPem = await openssl(['req', '-in', 'op-9.csr.der', '-inform', 'DER']);
    const claimDer = Buffer.from((await readFile(file('claim-9.crt'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const claimKey = createPrivateKey(await readFile(file('claim-9.key')));
    const claims = t.service.renewal.claims;
    const signedNow = (requestId: string) => {
      const signedAt = Math.floor(t.clock.now().getTime() / 1000);
      return { requestId, signedAt, signature: signData('sha256', Buffer.from(provisioningSigningText(requestId, signedAt, csrPem)), claimKey).toString('base64') };
    };
    const remembered = async () =>
      database.db.asOperator(async (tx) => (await tx.query<{ request_id: string }>(`SELECT request_id FROM claim_requests WHERE tenant_id = 'acme' AND request_id LIKE 'old-%' ORDER BY request_id`)).rows.map((r) => r.request_id));
    expect((await claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', signedNow('old-1'))).device_id).toBe('SN-0009');
    expect(await remembered()).toEqual(['old-1']);
    // Well past the window a signed request is accepted in: old-1 could never be replayed now.
    t.clock.advance(PROVISIONING_SIGNATURE_WINDOW_MS * 4);
    expect((await claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', signedNow('old-2'))).device_id).toBe('SN-0009');
    expect(await remembered()).toEqual(['old-2']);
    // A request inside the window is still refused as a replay.
    await expect(claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', { ...signedNow('old-2') })).rejects.toMatchObject({ code: 'REPLAYED_REQUEST' });
  });

  it('audits a flood of refused requests from one claim certificate up to a budget, and counts the rest', async () => {
    await makeClaim('claim-10', 'mfr', 'SN-0010');
    await csr('op-10');
    const csrPem = await openssl(['req', '-in', 'op-10.csr.der', '-inform', 'DER']);
    const claimDer = Buffer.from((await readFile(file('claim-10.crt'), 'utf8')).replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const wrongKey = createPrivateKey(await readFile(file('claim-9.key'))); // another claim's key: the signature is not this claim's
    const claims = t.service.renewal.claims;
    const forged = (requestId: string) => {
      const signedAt = Math.floor(t.clock.now().getTime() / 1000);
      return { requestId, signedAt, signature: signData('sha256', Buffer.from(provisioningSigningText(requestId, signedAt, csrPem)), wrongKey).toString('base64') };
    };
    for (let n = 0; n < REFUSAL_AUDIT_BURST + 5; n++) await expect(claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', forged(`forged-${n}`))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const ofClaim10 = async () => (await refusals()).filter((e) => typeof e.details.claim_subject === 'string' && e.details.claim_subject.includes('SN-0010'));
    expect(await ofClaim10()).toHaveLength(REFUSAL_AUDIT_BURST);
    t.clock.advance(60_000);
    await expect(claims.enrollWithClaim('acme', claimDer, csrPem, 'mqtt', forged('forged-last'))).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const after = await ofClaim10();
    expect(after).toHaveLength(REFUSAL_AUDIT_BURST + 1);
    expect(after.some((e) => e.details.suppressed_refusals === 5)).toBe(true);
  });

  it('asks the approval webhook (signed, with the tenant\'s timeout): approved, refused, no answer', async () => {
    // Long enough for the approver (in this process) to answer on a busy machine; the "hang" case waits it out.
    const APPROVAL_TIMEOUT_MS = Math.min(25_000, scaled(2_000));
    const put = await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { approval_webhook: { url: approver.url('/approve'), timeout_ms: APPROVAL_TIMEOUT_MS } }, admin);
    expect(put.status, put.body).toBe(200);
    const secret = put.json.approval_secret as string;
    expect(secret).toMatch(/^whsec_/);
    expect(put.json.approval_secret_set).toBe(true);
    // Reading the policy never shows the secret; putting it again with the same URL keeps it.
    expect(JSON.stringify((await t.call('acme', 'GET', '/api/v1/customer/provisioning-policy')).json)).not.toContain(secret);
    const kept = await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', { approval_webhook: { url: approver.url('/approve'), timeout_ms: APPROVAL_TIMEOUT_MS } }, admin);
    expect(kept.json.approval_secret).toBeUndefined();

    await makeClaim('claim-7', 'mfr', 'SN-0007');
    const approved = await enroll('acme', 'claim-7', await csr('op-7'));
    expect(approved.status, approved.body).toBe(200);
    const call = approver.received.find((r) => r.path === '/approve')!;
    expect(call.headers['x-certfleet-signature']).toBe(`sha256=${createHmac('sha256', secret).update(call.raw).digest('hex')}`);
    expect(JSON.parse(call.raw)).toMatchObject({ event: 'provisioning.approval_requested', tenant_id: 'acme', device_id: 'SN-0007', transport: 'est', claim: { common_name: 'SN-0007' } });

    const before = await certificateCount();
    approver.answer('/approve', { status: 200, body: { approved: false, reason: 'not on the shipping list' } });
    await makeClaim('claim-8', 'mfr', 'SN-0008');
    const refused = await expectRefused(await enroll('acme', 'claim-8', await csr('op-8')), 403, 'APPROVAL_REFUSED', before);
    expect(refused.detail).toMatch(/not on the shipping list/);

    approver.answer('/approve', 'hang');
    const late = await expectRefused(await enroll('acme', 'claim-8', await csr('op-8b')), 403, 'APPROVAL_REFUSED', before);
    expect(late.detail).toMatch(/did not answer in time/);
    expect((await t.call('acme', 'GET', '/customer/devices/SN-0008')).status).toBe(404);

    approver.answer('/approve', { status: 500, body: { approved: true } });
    await expectRefused(await enroll('acme', 'claim-8', await csr('op-8c')), 403, 'APPROVAL_REFUSED', before);
    // A secret sealed under a key this process does not have (WEBHOOK_SECRET_KEY rotated away): refused, not a 500.
    approver.answer('/approve', { status: 200, body: { approved: true } });
    await database.db.asOperator((tx) => tx.query(`UPDATE provisioning_policies SET approval_secret = 'v2:retired:AAAA' WHERE tenant_id = 'acme'`));
    const unopened = await expectRefused(await enroll('acme', 'claim-8', await csr('op-8d')), 403, 'APPROVAL_REFUSED', before);
    expect(unopened.detail).toMatch(/rotate_approval_secret/);
    expect((await t.call('acme', 'PUT', '/api/v1/customer/provisioning-policy', {}, admin)).json.approval_secret_set).toBe(false);
  });

  // The listener's TLS checks nothing of the claim's validity; certfleet checks it on its clock.
  it('refuses an expired claim certificate (last: it moves the clock)', async () => {
    await makeClaim('claim-short', 'mfr', 'SN-0009', { days: 1 });
    const before = await certificateCount();
    t.clock.advance(2 * DAY_MS);
    await expectRefused(await enroll('acme', 'claim-short', await csr('op-short')), 403, 'CLAIM_CERT_EXPIRED', before);
  });

  // Issue 21 item 2: the first operational certificate has the tenant's renewal-policy validity (it
  // used to be 365 days whatever the policy), never past the Device CA's notAfter.
  it("the first certificate has the tenant's validity_days, capped at the CA's notAfter (after the clock moved)", async () => {
    const onboard = async (name: string, cn: string) => {
      await makeClaim(name, 'mfr', cn);
      const res = await enroll('acme', name, await csr(`${name}-op`));
      expect(res.status, res.body).toBe(200);
      return new X509Certificate(await saveCert(res.body, `${name}-op`));
    };
    expect((await t.call('acme', 'PUT', '/customer/renewal-policy', { validity_days: 30 }, admin)).status).toBe(200);
    const signedAt = t.clock.now().getTime();
    const short = await onboard('claim-v30', 'SN-0030');
    expect(Math.abs(Date.parse(short.validTo) - (signedAt + 30 * DAY_MS))).toBeLessThan(5_000);

    expect((await t.call('acme', 'PUT', '/customer/renewal-policy', { validity_days: 3650 }, admin)).status).toBe(200);
    t.clock.advance(30 * DAY_MS);
    const capped = await onboard('claim-v3650', 'SN-3650');
    expect(capped.validTo).toBe(new X509Certificate(t.service.ca.ca!.certPem).validTo);
  });
});

describe('provisioning policy: device id derivation', () => {
  const facts = { commonName: 'SN-0001', serialHex: 'a0b0c', san: { dns: ['sn-0001.devices.example'], uri: [], email: [] } };
  const policy = (p: Parameters<typeof validateProvisioningPolicy>[0]) => validateProvisioningPolicy(p);

  it('derives the id from the CN, a SAN or the serial, through the first capture group', () => {
    // The legit patterns get a limit that a busy machine cannot hit (the 50 ms default is wall time).
    const capture = (pattern: string, value: string) => boundedCapture(pattern, value, scaled(2_000));
    expect(deriveDeviceId(policy({}), 'acme', facts, capture)).toBe('SN-0001');
    expect(deriveDeviceId(policy({ device_id: { from: 'san_dns', pattern: '^([^.]+)\\.devices\\.example$' } }), 'acme', facts, capture)).toBe('sn-0001');
    expect(deriveDeviceId(policy({ device_id: { from: 'serial' } }), 'acme', facts, capture)).toBe('a0b0c');
    expect(() => deriveDeviceId(policy({ device_id: { from: 'san_uri' } }), 'acme', facts, capture)).toThrow(/no SAN URI/);
    expect(() => deriveDeviceId(policy({}), 'acme', { ...facts, commonName: 'certfleet' }, capture)).toThrow(/reserved/);
  });

  // A tenant's pattern runs with a time limit: a catastrophic one cannot stall the process.
  it('refuses (INVALID_DEVICE_ID) a pattern that backtracks catastrophically instead of hanging', () => {
    const evil = policy({ device_id: { from: 'cn', pattern: '^((a+)+)$' } });
    let code: string | undefined;
    try {
      deriveDeviceId(evil, 'acme', { ...facts, commonName: `${'a'.repeat(40)}!` }, (pattern, value) => {
        try {
          return boundedCapture(pattern, value);
        } catch (e) {
          if (e instanceof RegexTimeoutError) throw new AppError('INVALID_DEVICE_ID', e.message);
          throw e;
        }
      });
    } catch (e) {
      code = (e as AppError).code;
    }
    // Without the limit this match runs for hours (2^40 paths): the refusal can only come from the timeout.
    expect(code).toBe('INVALID_DEVICE_ID');
  });
});
