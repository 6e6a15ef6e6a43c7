import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commands } from '../src/cli/commands.ts';
import { createWorker } from '../src/composition/worker.ts';
import { cli } from './support/cli.ts';
import { isGroup } from '../src/cli/spec.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { silentLogger } from '../src/support/logger.ts';
import { scaled } from './support/timeouts.ts';

const BIN = join(import.meta.dirname, 'support', 'certfleet-source.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'certfleet-cli-'));

const everyCommand = Object.entries(commands).flatMap(([name, entry]) => (isGroup(entry) ? Object.keys(entry.subcommands).map((sub) => [name, sub]) : [[name]]));

describe('certfleet CLI: help and usage errors', () => {
  it.each(everyCommand)('%s %s --help: usage, flags and an example, exit 0', async (...path) => {
    const r = await cli([...path.filter(Boolean), '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: certfleet ${path.filter(Boolean).join(' ')}`);
    expect(r.stdout).toMatch(/\nFlags:\n[\s\S]*--help/);
    expect(r.stdout).toMatch(/\nExamples?:\n {2}.*certfleet /);
  });

  it.each(everyCommand)('%s %s --no-such-flag: exit 2 with the usage', async (...path) => {
    const r = await cli([...path.filter(Boolean), '--no-such-flag']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Unknown option '--no-such-flag'");
    expect(r.stderr).toContain(`Usage: certfleet ${path.filter(Boolean).join(' ')}`);
  });

  it('groups and the top level: --help exits 0, a missing or unknown command exits 2', async () => {
    expect((await cli(['--help'])).stdout).toMatch(/Commands:[\s\S]*rotate-expiring[\s\S]*Exit codes:/);
    expect((await cli(['certs', '--help'])).code).toBe(0);
    expect((await cli(['certs'])).code).toBe(2);
    expect((await cli(['certs', 'frobnicate'])).code).toBe(2);
    expect((await cli(['frobnicate'])).code).toBe(2);
    expect((await cli([])).code).toBe(2);
    expect((await cli(['devices', 'show'])).stderr).toContain('missing argument DEVICE_ID');
  });

  it('the real binary exits 0 for --help and 2 for an unknown flag', () => {
    expect(execFileSync(process.execPath, [BIN, 'certs', 'rotate', '--help'], { encoding: 'utf8' })).toContain('Usage: certfleet certs rotate DEVICE_ID');
    let status: number | null = null;
    try {
      execFileSync(process.execPath, [BIN, 'alerts', 'list', '--bogus'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      status = (e as { status: number }).status;
    }
    expect(status).toBe(2);
  });
});

describe('certfleet CLI against a running certfleet', () => {
  let database: TestDatabase;
  let t: TestService;
  let url: string;
  let token: string;
  const config = tmp();
  const saved = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME, CERTFLEET_URL: process.env.CERTFLEET_URL, CERTFLEET_TOKEN: process.env.CERTFLEET_TOKEN };

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    url = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    token = await t.token('acme');
    process.env.XDG_CONFIG_HOME = config;
    delete process.env.CERTFLEET_URL;
    delete process.env.CERTFLEET_TOKEN;
  }, scaled(120_000));

  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
    await t?.close();
    await database?.close();
  });

  it('without credentials: exit 3; login checks the token and stores it with mode 0600; a bad token exits 3', async () => {
    expect((await cli(['devices', 'list'])).code).toBe(3);
    expect((await cli(['login', '--url', url, '--token', 'not-a-token'])).code).toBe(3);
    const r = await cli(['login', '--url', url, '--token', token]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(config, 'certfleet', 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(config, 'certfleet')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ url, token });
    expect((await cli(['devices', 'list', '--url', 'http://127.0.0.1:1'])).code).toBe(3); // the flag wins, and nothing listens there
  });

  it('devices add, list (aligned table) and show; an unknown device exits 1 with its code', async () => {
    expect((await cli(['devices', 'add', 'DEV-1', '--site', 'plant-7'])).code).toBe(0);
    expect((await cli(['devices', 'add', 'DEV-22'])).code).toBe(0);
    const list = await cli(['devices', 'list']);
    expect(list.stdout.split('\n').slice(0, 3)).toEqual([
      'DEVICE  SITE     STATUS  CREATED',
      expect.stringMatching(/^DEV-1 {3}plant-7 {2}ACTIVE {2}just now$/),
      expect.stringMatching(/^DEV-22 {2}- {8}ACTIVE {2}just now$/),
    ]);
    expect(JSON.parse((await cli(['devices', 'show', 'DEV-1', '--json'])).stdout).device).toMatchObject({ device_id: 'DEV-1', site_id: 'plant-7' });
    const missing = await cli(['devices', 'show', 'NOPE']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('DEVICE_NOT_FOUND');
  });

  it('certs generate and rotate write key and certificate with mode 0600 and never print the key', async () => {
    const out = tmp();
    const gen = await cli(['certs', 'generate', 'DEV-1', '--key-type', 'ec-p256', '--validity-days', '20', '--out', out, '--json']);
    expect(gen.code, gen.stderr).toBe(0);
    expect(gen.stdout).not.toContain('PRIVATE KEY');
    const issued = JSON.parse(gen.stdout);
    expect(issued.private_key_pem).toBeUndefined();
    for (const f of [issued.files.key_path, issued.files.cert_path]) expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readFileSync(issued.files.key_path, 'utf8')).toContain('PRIVATE KEY');
    execFileSync('openssl', ['verify', '-CAfile', issued.files.ca_path, issued.files.cert_path]);

    const human = await cli(['certs', 'list', '--expiring-within', '30d']);
    expect(human.stdout).toMatch(/ID\s+DEVICE\s+STATUS\s+KEY\s+EXPIRES/);
    expect(human.stdout).toMatch(/DEV-1\s+ACTIVE\s+ec-p256\s+in (19|20) days/);

    const rotated = await cli(['certs', 'rotate', 'DEV-1', '--key-type', 'ec-p256', '--grace-hours', '48', '--out', out]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).not.toContain('PRIVATE KEY');
    expect(rotated.stdout).toMatch(/in 2 days|in 48 hours/);
    expect(statSync(join(out, 'DEV-1.key')).mode & 0o777).toBe(0o600);
    const shown = JSON.parse((await cli(['certs', 'show', String(issued.certificate.id), '--json'])).stdout).certificate;
    expect(shown.scheduled_revoke_at).not.toBeNull();
    expect((await cli(['certs', 'confirm', 'DEV-1'])).code).toBe(0);
    expect(JSON.parse((await cli(['certs', 'show', String(issued.certificate.id), '--json'])).stdout).certificate.status).toBe('REVOKED');
    expect((await cli(['certs', 'cancel', 'DEV-1'])).code).toBe(1); // nothing pending any more
  });

  it('certs csr and import; revoke; crl show verifies against the CA; crl fetch writes it; inspect reads all three', async () => {
    const dir = tmp();
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'd.key'), '-subj', '/CN=x', '-out', join(dir, 'd.csr')], { stdio: 'pipe' });
    const csr = await cli(['certs', 'csr', 'DEV-22', '--csr', join(dir, 'd.csr'), '--out', dir, '--json']);
    expect(csr.code, csr.stderr).toBe(0);
    const id = JSON.parse(csr.stdout).certificate.id;
    const revoked = await cli(['certs', 'revoke', String(id), '--reason', 'keyCompromise']);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await cli(['certs', 'import', 'DEV-22', '--cert', join(dir, 'DEV-22.crt')])).code).toBe(1); // already known

    const show = await cli(['crl', 'show', '--url', url, '--json']);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ verified: true });
    const other = tmp();
    expect((await cli(['init-ca', '--out', other])).code).toBe(0);
    const wrong = await cli(['crl', 'show', '--ca', join(other, 'device-ca.crt')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(/verified:\s+NO/);

    const crlFile = join(dir, 'crl.pem');
    expect((await cli(['crl', 'fetch', '--out', crlFile])).code).toBe(0);
    const crl = await cli(['inspect', crlFile, '--json']);
    expect(JSON.parse(crl.stdout)).toMatchObject({ kind: 'crl', entries: expect.arrayContaining([expect.objectContaining({ reason: 'keyCompromise' })]) });
    expect(JSON.parse((await cli(['inspect', join(dir, 'DEV-22.crt'), '--json'])).stdout)).toMatchObject({ kind: 'certificate', subject: 'CN=acme/DEV-22' });
    expect(JSON.parse((await cli(['inspect', join(dir, 'd.csr'), '--json'])).stdout)).toMatchObject({ kind: 'csr', signature_valid: true });
    const der = join(dir, 'd.der');
    execFileSync('openssl', ['x509', '-in', join(dir, 'DEV-22.crt'), '-outform', 'DER', '-out', der]);
    expect((await cli(['inspect', der])).stdout).toMatch(/type:\s+certificate/);
    writeFileSync(join(dir, 'junk'), 'hello');
    expect((await cli(['inspect', join(dir, 'junk')])).code).toBe(1);
  });

  it('alerts list, ack and close', async () => {
    // DEV-1's first certificate (20 days) was rotated; a new one expiring in 10 days gets an alert.
    expect((await cli(['certs', 'generate', 'DEV-22', '--key-type', 'ec-p256', '--validity-days', '10', '--out', tmp()])).code).toBe(0);
    const worker = await createWorker(t.config, { clock: t.clock, storage: database.storage, metrics: t.service.metrics, crl: t.service.crl.publisher, revocations: t.service.crl.listener, logger: silentLogger, holder: 'cli-test' });
    try {
      expect((await worker.runOnce()).filter((r) => r.status !== 'ok')).toEqual([]);
    } finally {
      await worker.close();
    }
    const list = await cli(['alerts', 'list', '--status', 'OPEN', '--json']);
    expect(list.code, list.stderr).toBe(0);
    const alerts = JSON.parse(list.stdout).alerts as { id: number; device_id: string }[];
    expect(alerts.map((a) => a.device_id)).toContain('DEV-22');
    const id = String(alerts[0].id);
    expect(JSON.parse((await cli(['alerts', 'ack', id, '--json'])).stdout).alert.status).toBe('ACKNOWLEDGED');
    expect(JSON.parse((await cli(['alerts', 'close', id, '--json'])).stdout).alert.status).toBe('CLOSED');
    expect((await cli(['alerts', 'list'])).stdout).toMatch(/ID\s+SEV\s+STATUS\s+TYPE\s+DEVICE\s+UPDATED\s+SUMMARY/);
  });

  it('the binary in a child process reads CERTFLEET_URL and CERTFLEET_TOKEN', async () => {
    const child = spawn(process.execPath, [BIN, 'devices', 'show', 'DEV-1', '--json'], { env: { ...process.env, XDG_CONFIG_HOME: tmp(), CERTFLEET_URL: url, CERTFLEET_TOKEN: token } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(0);
    expect(JSON.parse(out).device.device_id).toBe('DEV-1');
  });

  it('login reads the token from standard input when --token is not given', async () => {
    const home = tmp();
    const child = spawn(process.execPath, [BIN, 'login', '--url', url], { env: { ...process.env, XDG_CONFIG_HOME: home, CERTFLEET_TOKEN: '' } });
    child.stdin.end(`${token}\n`);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code, err).toBe(0);
    expect(JSON.parse(readFileSync(join(home, 'certfleet', 'credentials.json'), 'utf8')).token).toBe(token);
  });

  // Last (after the worker run above): an operators' endpoint is registered here. From
  // test/cli-webhooks.test.ts and test/cli-claims.test.ts, which each started a database and a
  // service of their own for one test (issue 23: one per file).
  it('webhooks list/add: an operator adds and lists the operators endpoints (tenant __system__); a customer token is refused, and sees only its own', async () => {
    const operator = ['--url', url, '--token', await t.token(null, 'operator')];
    const added = await cli(['webhooks', 'add', 'https://oncall.example.com/certfleet', '--operator', '--description', 'pager', '--json', ...operator]);
    expect(added.code, added.stderr).toBe(0);
    const created = JSON.parse(added.stdout);
    expect(created).toMatchObject({ webhook: { tenant_id: '__system__', url: 'https://oncall.example.com/certfleet' }, secret: expect.stringMatching(/^whsec_/) });
    const listed = await cli(['webhooks', 'list', '--operator', ...operator]);
    expect(listed.stdout).toMatch(/ID\s+ENABLED\s+URL/);
    expect(listed.stdout).toContain('https://oncall.example.com/certfleet');
    expect(listed.stdout).not.toContain(created.secret);

    const customer = ['--url', url, '--token', await t.token('acme')];
    expect((await cli(['webhooks', 'list', '--operator', ...customer])).code).not.toBe(0);
    expect((await cli(['webhooks', 'add', 'https://evil.example.com/', '--operator', ...customer])).code).not.toBe(0);
    const own = await cli(['webhooks', 'list', '--json', ...customer]);
    expect(JSON.parse(own.stdout).webhooks).toEqual([]);
  });

  it('claim-cas / provisioning-policy: a tenant admin adds a claim CA with its CRL (openssl) and sets the policy from a file; a customer may only read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'certfleet-cli-claims-'));
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.crt', '-days', '365',
      '-subj', '/CN=CLI Claim CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    writeFileSync(join(dir, 'ca.cnf'), '[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = mfr.crt\nprivate_key = mfr.key\n');
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'crlnumber'), '01\n');
    openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'mfr.crl']);
    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ admit: { cn_patterns: ['SN-*'] }, site_id: 'line-3' }));

    const admin = ['--url', url, '--token', await t.token('acme', 'tenant-admin')];
    const customer = ['--url', url, '--token', await t.token('acme')];
    expect((await cli(['claim-cas', 'add', join(dir, 'mfr.crt'), ...customer])).code).not.toBe(0);

    const added = await cli(['claim-cas', 'add', join(dir, 'mfr.crt'), '--name', 'line 3', '--crl', join(dir, 'mfr.crl'), '--json', ...admin]);
    expect(added.code, added.stderr).toBe(0);
    const created = JSON.parse(added.stdout).claim_ca;
    expect(created).toMatchObject({ name: 'line 3', subject: 'CN=CLI Claim CA', crl: { entries: 0 } });
    expect((await cli(['claim-cas', 'crl', String(created.id), join(dir, 'mfr.crl'), ...admin])).code).toBe(0);
    const listed = await cli(['claim-cas', 'list', ...customer]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('CN=CLI Claim CA');

    expect((await cli(['provisioning-policy', 'set', join(dir, 'policy.json'), ...customer])).code).not.toBe(0);
    const set = await cli(['provisioning-policy', 'set', join(dir, 'policy.json'), '--json', ...admin]);
    expect(set.code, set.stderr).toBe(0);
    const shown = JSON.parse((await cli(['provisioning-policy', 'show', '--json', ...customer])).stdout);
    expect(shown).toMatchObject({ default: false, policy: { admit: { cn_patterns: ['SN-*'] }, site_id: 'line-3' } });
    expect((await cli(['provisioning-policy', 'set', join(dir, 'missing.json'), ...admin])).code).toBe(2);
  });
});
