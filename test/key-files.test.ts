/**
 * No command ever overwrites or deletes a private key file (issue 25 point 1). Every writer of
 * key files is run twice into the same folder: `certs generate`, `certs csr`, `certs rotate`
 * (the reported case: rotate, then cancel, must leave the still-valid old key), `rotate-expiring`,
 * `init-ca`, broker-config's server key and server CA key, the broker agent's canary keys, and
 * the CA key store (CA records' key files). After each, every file that was there before is still
 * there with the same bytes (`--force` replaces for those who mean it), or, where a file must take
 * the name (broker-config's server key, the agent's canaries), its bytes are kept as NAME.old-N.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { createBrokerAgent } from '../src/broker/agent/broker-agent.ts';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { JOURNAL_FILE } from '../src/cli/rotation-journal.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { createCaKeystore } from '../src/pki/ca-keystore.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import type { LogFields } from '../src/support/logger.ts';
import { captureLogger } from './support/capture-logger.ts';
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

/** A promise with its resolve and reject (Promise.withResolvers, which Node 20 lacks). */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  const handles: { resolve?: () => void; reject?: (error: Error) => void } = {};
  const promise = new Promise<void>((resolve, reject) => Object.assign(handles, { resolve, reject }));
  return { promise, resolve: () => handles.resolve!(), reject: (error) => handles.reject!(error) };
}

/** Every file of `before` still has its bytes somewhere in `dir` (under its name, or kept as NAME.old-N). */
function expectKeysKept(before: Map<string, string>, dir: string): void {
  const after = snapshot(dir);
  const contents = new Set(after.values());
  for (const [name, content] of before) expect(contents.has(content), `${name} was lost (in ${[...after.keys()].sort().join(', ')})`).toBe(true);
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

  /**
   * Runs the broker agent (what `certfleet broker-agent` runs) on `stateDir` until it reloads the
   * broker after its first CRL bundle (past its canary files by then), then stops it; its log says
   * whether it wrote new canaries. The reload is held until the stop, so no canary handshake is
   * tried against a broker that is not there.
   */
  async function canariesOnce(stateDir: string, node: string): Promise<LogFields[]> {
    const dir = tmp();
    const tokenFile = join(dir, 'agent.token');
    const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
    writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: node, subject: `broker-node:${node}`, ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
    const caPem = readFileSync(t.config.caCertPath, 'utf8');
    writeFileSync(join(dir, 'device-ca.crt'), caPem);
    const stopped = deferred();
    const reloading = deferred();
    const entries: LogFields[] = [];
    const log = captureLogger(entries);
    const logger = {
      ...log,
      warn(fields: LogFields, msg: string) {
        log.warn(fields, msg);
        if (fields.event === 'broker_agent_retry') reloading.reject(new Error(`the agent failed: ${String(fields.err)}`));
      },
    };
    const agent = createBrokerAgent({
      url: flags[1],
      tokenFile,
      node,
      kind: 'mosquitto',
      crlFile: join(dir, 'crl.pem'),
      caFile: join(dir, 'device-ca.crt'),
      caScopesFile: null,
      reloader: {
        configured: true,
        description: 'held until the agent stops',
        reload: () => {
          reloading.resolve();
          return stopped.promise.then(() => Promise.reject(new Error('stopped')));
        },
      },
      sessions: null,
      canary: { url: 'mqtts://127.0.0.1:1', serverCaPem: caPem },
      stateDir,
      logger,
    });
    void agent.run();
    try {
      await reloading.promise;
    } finally {
      const stopping = agent.stop();
      stopped.resolve();
      await stopping;
    }
    expect(entries.filter((e) => e.event === 'broker_agent_canaries'), 'new canaries were written').toHaveLength(1);
    return entries;
  }

  /** A canary pair made by hand: a P-256 key and a certificate valid for `days` days. */
  function oldCanary(dir: string, name: string, days: number): void {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`), '-days', String(days), '-subj', `/CN=old ${name}`], { stdio: 'pipe' });
  }

  it('broker-agent: canaries renewed before they expire keep the previous keys as .old-1, and the new pairs match', async () => {
    const state = tmp();
    oldCanary(state, 'canary-valid', 5); // within 14 days of expiry: the agent asks for new canaries
    oldCanary(state, 'canary-revoked', 5);
    const before = snapshot(state);
    const log = await canariesOnce(state, 'keys-renewal');
    expectKeysKept(before, state);
    for (const name of ['canary-valid', 'canary-revoked']) {
      expect(readFileSync(join(state, `${name}.key.old-1`), 'utf8')).toBe(before.get(`${name}.key`));
      expect(readFileSync(join(state, `${name}.crt.old-1`), 'utf8')).toBe(before.get(`${name}.crt`));
      expect(readFileSync(join(state, `${name}.key`), 'utf8')).not.toBe(before.get(`${name}.key`));
      expect(pairOf(join(state, `${name}.crt`), join(state, `${name}.key`))).toBe(true);
      expect(statSync(join(state, `${name}.key`)).mode & 0o777).toBe(0o600);
    }
    expect(log.find((e) => e.event === 'broker_agent_canaries')?.kept).toEqual(expect.arrayContaining([join(state, 'canary-valid.key.old-1'), join(state, 'canary-revoked.key.old-1')]));
  });

  it('broker-agent: keys left without their certificates (a run killed between the writes) are kept when new canaries come', async () => {
    const state = tmp();
    oldCanary(state, 'canary-valid', 90);
    oldCanary(state, 'canary-revoked', 90);
    rmSync(join(state, 'canary-valid.crt'));
    rmSync(join(state, 'canary-revoked.crt'));
    const before = snapshot(state);
    await canariesOnce(state, 'keys-orphans');
    expectKeysKept(before, state);
    expect(pairOf(join(state, 'canary-valid.crt'), join(state, 'canary-valid.key'))).toBe(true);
  });

  it('broker-agent: a key that does not belong to its certificate is not used; new canaries come and it is kept', async () => {
    const state = tmp();
    oldCanary(state, 'canary-valid', 90);
    oldCanary(state, 'canary-revoked', 90);
    oldCanary(state, 'other', 90);
    renameSync(join(state, 'other.key'), join(state, 'canary-valid.key')); // the certificate stays, the key is another one's
    const before = snapshot(state);
    await canariesOnce(state, 'keys-mismatch');
    expectKeysKept(before, state);
    expect(pairOf(join(state, 'canary-valid.crt'), join(state, 'canary-valid.key'))).toBe(true);
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
  it('the CA key store never replaces a CA key file: a second key for the same CA id is refused (CA_EXISTS) and the first stays', async () => {
    const dir = tmp();
    const keystore = createCaKeystore({ dir, passphrase: {}, modulePath: '', pinFile: null, sessions: 1 });
    const input = { id: 'ca_00000000000000aa', keyType: 'ec-p256' as const, keyUri: null, commonName: 'key-files CA', now: new Date() };
    await (await keystore.generate(input)).persist();
    const before = snapshot(dir);
    expect([...before.keys()]).toEqual(['ca_00000000000000aa.key']);
    const second = await keystore.generate({ ...input, keyType: 'rsa-3072' });
    await expect(second.persist()).rejects.toMatchObject({ code: 'CA_EXISTS' });
    expectNothingLost(before, dir);
    // an imported CA under the same id is refused the same way
    const own = await createDeviceCa({ now: new Date(), commonName: 'imported CA' });
    const imported = await keystore.importCa({ id: input.id, certPem: own.certPem, keyPem: own.keyPem, keyUri: null, now: new Date() });
    await expect(imported.persist()).rejects.toMatchObject({ code: 'CA_EXISTS' });
    expectNothingLost(before, dir);
    expect(statSync(join(dir, 'ca_00000000000000aa.key')).mode & 0o777).toBe(0o600);
  });

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
