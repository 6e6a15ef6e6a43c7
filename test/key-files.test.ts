/**
 * No command ever overwrites or deletes a private key file (issue 25 point 1). Every writer of
 * key files is run twice into the same folder: `certs generate`, `certs csr`, `certs rotate`
 * (the reported case: rotate, then cancel, must leave the still-valid old key), `rotate-expiring`,
 * `init-ca`, and broker-config's server key and server CA key. After each, every file that was
 * there before is still there with the same bytes; `--force` replaces for those who mean it.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { JOURNAL_FILE } from '../src/cli/rotation-journal.ts';
import { cli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'certfleet-keyfiles-'));

/** Every file in `dir` with its content. */
const snapshot = (dir: string) => new Map(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => [e.name, readFileSync(join(dir, e.name), 'utf8')]));

/** Every file of `before` is still in `dir`, byte for byte. */
function expectNothingLost(before: Map<string, string>, dir: string): void {
  const after = snapshot(dir);
  for (const [name, content] of before) expect(after.get(name), `${name} was replaced or deleted`).toBe(content);
}

/** The key in `keyFile` belongs to the certificate in `certFile`. */
const pairOf = (certFile: string, keyFile: string) => new X509Certificate(readFileSync(certFile)).checkPrivateKey(createPrivateKey(readFileSync(keyFile)));

describe('CLI writers of device keys never replace an existing key or certificate', () => {
  let database: TestDatabase;
  let t: TestService;
  let flags: string[];

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    const url = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    flags = ['--url', url, '--token', await t.token('acme')];
    for (const id of ['DEV-G', 'DEV-R', 'DEV-C', 'DEV-X']) expect((await cli(['devices', 'add', id, ...flags])).code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('certs generate twice into one folder: the first key stays, the second goes beside it and the output says so', async () => {
    const out = tmp();
    const first = await cli(['certs', 'generate', 'DEV-G', '--key-type', 'rsa-2048', '--out', out, ...flags]);
    expect(first.code, first.stderr).toBe(0);
    const before = snapshot(out);
    expect([...before.keys()].sort()).toEqual(['DEV-G.crt', 'DEV-G.key', 'ca.crt']);
    const second = await cli(['certs', 'generate', 'DEV-G', '--key-type', 'ec-p256', '--out', out, ...flags, '--json']);
    expect(second.code, second.stderr).toBe(0);
    expectNothingLost(before, out);
    const files = JSON.parse(second.stdout).files;
    const id = JSON.parse(second.stdout).certificate.id;
    expect(files).toMatchObject({ key_path: join(out, `DEV-G.${id}.key`), cert_path: join(out, `DEV-G.${id}.crt`), ca_path: join(out, 'ca.crt') });
    expect(files.kept.map((k: { existing: string }) => k.existing)).toEqual([join(out, 'DEV-G.key'), join(out, 'DEV-G.crt')]);
    expect(pairOf(files.cert_path, files.key_path)).toBe(true);
    expect(statSync(files.key_path).mode & 0o777).toBe(0o600);
    // The human output names both.
    const third = await cli(['certs', 'generate', 'DEV-G', '--out', out, ...flags]);
    expect(third.stdout).toMatch(/DEV-G\.key, DEV-G\.crt already existed and were kept; the new files are .*DEV-G\.\d+\.key, .*DEV-G\.\d+\.crt \(--force replaces\)/);
  });

  it('certs rotate then cancel (the reported loss): the old RSA key is still beside its certificate', async () => {
    const out = tmp();
    expect((await cli(['certs', 'generate', 'DEV-R', '--key-type', 'rsa-2048', '--out', out, ...flags])).code).toBe(0);
    const before = snapshot(out);
    const rotated = await cli(['certs', 'rotate', 'DEV-R', '--key-type', 'ec-p256', '--out', out, ...flags, '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect((await cli(['certs', 'cancel', 'DEV-R', ...flags])).code).toBe(0);
    expectNothingLost(before, out);
    expect(pairOf(join(out, 'DEV-R.crt'), join(out, 'DEV-R.key'))).toBe(true);
    const { files } = JSON.parse(rotated.stdout);
    expect(pairOf(files.cert_path, files.key_path)).toBe(true);
  });

  it('certs csr keeps an existing certificate; --force replaces key and certificate', async () => {
    const out = tmp();
    expect((await cli(['certs', 'generate', 'DEV-C', '--out', out, ...flags])).code).toBe(0);
    const before = snapshot(out);
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(out, 'own.key'), '-subj', '/CN=x', '-out', join(out, 'own.csr')], { stdio: 'pipe' });
    const csr = await cli(['certs', 'csr', 'DEV-C', '--csr', join(out, 'own.csr'), '--out', out, ...flags, '--json']);
    expect(csr.code, csr.stderr).toBe(0);
    expectNothingLost(before, out);
    expect(JSON.parse(csr.stdout).files.cert_path).toMatch(/DEV-C\.\d+\.crt$/);

    const forced = await cli(['certs', 'rotate', 'DEV-C', '--force', '--out', out, ...flags, '--json']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout).files).toMatchObject({ key_path: join(out, 'DEV-C.key'), cert_path: join(out, 'DEV-C.crt'), kept: [] });
    expect(readFileSync(join(out, 'DEV-C.key'), 'utf8')).not.toBe(before.get('DEV-C.key'));
  });

  it('rotate-expiring into a folder that holds the current keys keeps them and writes the new ones beside', async () => {
    const out = tmp();
    expect((await cli(['certs', 'generate', 'DEV-X', '--validity-days', '5', '--out', out, ...flags])).code).toBe(0);
    const before = snapshot(out);
    const run = await cli(['rotate-expiring', '--within', '30d', '--out', out, ...flags, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expectNothingLost(before, out);
    const rotated = JSON.parse(run.stdout).results.find((r: { device_id: string }) => r.device_id === 'DEV-X');
    expect(rotated).toMatchObject({ outcome: 'rotated', key_path: expect.stringMatching(/DEV-X\.\d+\.key$/), kept: [join(out, 'DEV-X.key'), join(out, 'DEV-X.crt')] });
    expect(pairOf(rotated.cert_path, rotated.key_path)).toBe(true);
  });

  it('a key left without its certificate (a run killed between the two writes) is kept, and the new pair shares one name', async () => {
    const out = tmp();
    expect((await cli(['devices', 'add', 'DEV-H', ...flags])).code).toBe(0);
    const orphan = (await cli(['certs', 'generate', 'DEV-H', '--out', tmp(), ...flags, '--json'])).stdout;
    writeFileSync(join(out, 'DEV-H.key'), readFileSync(JSON.parse(orphan).files.key_path), { mode: 0o600 });
    const before = snapshot(out);
    const second = await cli(['certs', 'generate', 'DEV-H', '--out', out, ...flags, '--json']);
    expect(second.code, second.stderr).toBe(0);
    expectNothingLost(before, out);
    const { files, certificate } = JSON.parse(second.stdout);
    expect(files).toMatchObject({ key_path: join(out, `DEV-H.${certificate.id}.key`), cert_path: join(out, `DEV-H.${certificate.id}.crt`) });
    expect(pairOf(files.cert_path, files.key_path)).toBe(true);
    expect(existsSync(join(out, 'DEV-H.crt'))).toBe(false); // never a certificate beside a key it does not match
  });

  it('rotate-expiring after a kill between the key and the certificate: the key that arrived is used, not cancelled', async () => {
    const out = tmp();
    expect((await cli(['devices', 'add', 'DEV-K', ...flags])).code).toBe(0);
    const first = await cli(['certs', 'generate', 'DEV-K', '--validity-days', '5', '--out', tmp(), ...flags, '--json']);
    const oldId = JSON.parse(first.stdout).certificate.id;
    // What the killed run did: journalled its intent, rotated, wrote the key, died before the certificate.
    writeFileSync(join(out, JOURNAL_FILE), `${JSON.stringify({ event: 'intent', device_id: 'DEV-K', old_certificate_ids: [oldId], at: new Date().toISOString() })}\n`, { mode: 0o600 });
    const rotated = await cli(['certs', 'rotate', 'DEV-K', '--out', tmp(), ...flags, '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const newId = JSON.parse(rotated.stdout).new_certificate.id;
    writeFileSync(join(out, 'DEV-K.key'), readFileSync(JSON.parse(rotated.stdout).files.key_path), { mode: 0o600 });

    const run = await cli(['rotate-expiring', '--within', '30d', '--out', out, ...flags, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout).results.find((r: { device_id: string }) => r.device_id === 'DEV-K');
    expect(result).toMatchObject({ outcome: 'recovered', new_certificate_id: newId, key_path: join(out, 'DEV-K.key'), cert_path: join(out, 'DEV-K.crt') });
    expect(pairOf(join(out, 'DEV-K.crt'), join(out, 'DEV-K.key'))).toBe(true);
    expect(statSync(join(out, 'DEV-K.crt')).mode & 0o777).toBe(0o600);
    const pending = await t.call('acme', 'GET', '/api/v1/customer/devices/DEV-K/certificates/rotation');
    expect(pending.json.new_certificate.id).toBe(newId); // still pending, not cancelled
  });
});

describe('service-side writers of CA and broker keys', () => {
  it('init-ca refuses a folder that already holds a Device CA, and leaves it as it was', async () => {
    const out = tmp();
    expect((await cli(['init-ca', '--out', out])).code).toBe(0);
    const before = snapshot(out);
    const again = await cli(['init-ca', '--out', out, '--key-type', 'rsa-3072']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('not overwriting');
    expectNothingLost(before, out);
  });

  it('broker-config: a renewed server key and a server CA key given up for the operator’s own certificate are kept, never deleted', async () => {
    const ca = tmp();
    expect((await cli(['init-ca', '--out', ca])).code).toBe(0);
    const out = tmp();
    const base = { outDir: out, deviceCaCertPem: readFileSync(join(ca, 'device-ca.crt'), 'utf8'), crlPath: join(out, 'crl.pem') };
    await writeBrokerConfig(base);
    const before = snapshot(out);
    const renewed = await writeBrokerConfig({ ...base, renewServerCertificate: true });
    expect(readFileSync(join(out, 'server.key'), 'utf8')).not.toBe(before.get('server.key'));
    expect(readFileSync(join(out, 'server.key.old-1'), 'utf8')).toBe(before.get('server.key'));
    expect(renewed.lines.join('\n')).toContain('the previous key is kept as');

    // The operator's own certificate: the server CA key certfleet kept is moved aside, not deleted.
    const own = tmp();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(own, 'ca.key'), '-out', join(own, 'ca.crt'), '-days', '30', '-subj', '/CN=own CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], { stdio: 'pipe' });
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(own, 's.key'), '-out', join(own, 's.csr'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'pipe' });
    execFileSync('openssl', ['x509', '-req', '-in', join(own, 's.csr'), '-CA', join(own, 'ca.crt'), '-CAkey', join(own, 'ca.key'), '-CAcreateserial', '-days', '20', '-copy_extensions', 'copy', '-out', join(own, 's.crt')], { stdio: 'pipe' });
    const middle = snapshot(out);
    const supplied = await writeBrokerConfig({ ...base, serverCertificate: { certPem: readFileSync(join(own, 's.crt'), 'utf8'), keyPem: readFileSync(join(own, 's.key'), 'utf8'), caPem: readFileSync(join(own, 'ca.crt'), 'utf8') } });
    const after = snapshot(out);
    const keptValues = [...after.values()];
    for (const name of ['server.key', 'server-ca.key']) expect(keptValues, `${name} lost`).toContain(middle.get(name));
    expect(supplied.lines.join('\n')).toMatch(/moved .*server-ca\.key to .*server-ca\.key\.old-1/);
  });
});
