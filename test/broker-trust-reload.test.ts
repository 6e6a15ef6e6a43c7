/**
 * Which of a listener's trust files a running Mosquitto 2.0.11 re-reads, and when: the facts
 * certfleet's broker files rely on, measured on a real broker with three mutual-TLS listeners that
 * all start trusting claim CA A only, then get claim CA B added.
 *
 * - `capath` (what `broker-config --provisioning-port` writes for the claim CAs, kept by certfleet
 *   as `<subject hash>.<n>` files): a CA added is trusted at the next handshake, with no reload (OpenSSL
 *   looks the directory up at verification time); a CA removed stays trusted by the running broker
 *   once OpenSSL has loaded it, until a restart.
 * - `cafile` without `crlfile` (what the provisioning listener would be with a cafile): a CA appended
 *   is NOT trusted after SIGHUP, although the reload is logged; only a restart reads it. This is the
 *   measurement that settled the question: the claim CAs must live in a capath, as they do.
 * - `cafile` with `crlfile` (the device listener): a CA appended (with its CRL) IS trusted after
 *   SIGHUP, which is why certfleet's CA rollover works with a reload.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RENDER_OPTIONS_FILE } from '../src/broker/broker-files.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { run } from './support/openssl.ts';
import { connectOnce, credentialFrom, type Credential } from './support/rollover.ts';
import { scaled } from './support/timeouts.ts';

describe('trust files a running Mosquitto re-reads (capath, cafile, cafile with crlfile), real broker', () => {
  let dir: string;
  let broker: RunningMosquitto;
  const ports = { cafile: 0, capath: 0, cafileCrl: 0 };
  const creds: Record<'a' | 'b', Credential> = {} as Record<'a' | 'b', Credential>;
  let serverCa: string;
  const f = (name: string) => join(dir, name);

  function mustRun(args: string[]) {
    const r = run('openssl', args);
    if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.out}`);
    return r.out;
  }
  const makeCa = (name: string) =>
    mustRun(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '30', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  function makeLeaf(name: string, ca: string, usage: string) {
    mustRun(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
    writeFileSync(f(`${name}.ext`), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${usage}\nsubjectAltName=DNS:localhost\n`);
    mustRun(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '30', '-extfile', f(`${name}.ext`), '-out', f(`${name}.crt`)]);
  }
  function makeCrl(ca: string) {
    writeFileSync(f(`${ca}.index`), '');
    writeFileSync(f(`${ca}.crlnum`), '01\n');
    writeFileSync(f(`${ca}.cnf`), `[ca]\ndefault_ca=d\n[d]\ndatabase=${f(`${ca}.index`)}\ncrlnumber=${f(`${ca}.crlnum`)}\ndefault_md=sha256\ndefault_crl_days=30\n`);
    mustRun(['ca', '-gencrl', '-config', f(`${ca}.cnf`), '-keyfile', f(`${ca}.key`), '-cert', f(`${ca}.crt`), '-out', f(`${ca}.crl`)]);
  }
  const hashName = (ca: string) => `${mustRun(['x509', '-in', f(`${ca}.crt`), '-noout', '-hash']).trim()}.0`;
  /** Written in place of the old file, readable by the mosquitto user the broker drops to. */
  const put = (path: string, text: string) => {
    writeFileSync(`${path}.new`, text, { mode: 0o644 });
    chmodSync(`${path}.new`, 0o644);
    renameSync(`${path}.new`, path);
  };
  const pem = (name: string) => readFileSync(f(name), 'utf8');
  const outcome = (port: number, who: 'a' | 'b') => connectOnce({ port, caPem: serverCa, timeoutMs: scaled(20_000) }, creds[who]);
  const outcomes = async (who: 'a' | 'b') => ({
    cafile: await outcome(ports.cafile, who),
    capath: await outcome(ports.capath, who),
    cafileCrl: await outcome(ports.cafileCrl, who),
  });
  const start = () => startMosquitto({ configDir: dir, asWritten: true });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'certfleet-trust-reload-'));
    chmodSync(dir, 0o755);
    makeCa('server-ca');
    makeLeaf('server', 'server-ca', 'serverAuth');
    for (const ca of ['claimA', 'claimB']) {
      makeCa(ca);
      makeCrl(ca);
    }
    makeLeaf('devA', 'claimA', 'clientAuth');
    makeLeaf('devB', 'claimB', 'clientAuth');
    serverCa = pem('server-ca.crt');
    creds.a = credentialFrom(pem('devA.crt'), pem('devA.key'));
    creds.b = credentialFrom(pem('devB.crt'), pem('devB.key'));
    mkdirSync(f('capath'), { mode: 0o755 });
    mkdirSync(f('run'));
    chmodSync(f('run'), 0o777); // Mosquitto writes its pid file after dropping to the mosquitto user
    put(f('bundle.pem'), pem('claimA.crt'));
    put(f(join('capath', hashName('claimA'))), pem('claimA.crt'));
    put(f('bundle-crl.pem'), pem('claimA.crt'));
    put(f('crls.pem'), pem('claimA.crl'));
    for (const name of ['server.crt', 'server.key']) chmodSync(f(name), 0o644);
    ports.cafile = await freePort();
    ports.capath = await freePort();
    ports.cafileCrl = await freePort();
    const listener = (port: number, trust: string[]) => [
      `listener ${port} 127.0.0.1`,
      ...trust,
      `certfile ${f('server.crt')}`,
      `keyfile ${f('server.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
    ];
    writeFileSync(
      f('mosquitto.conf'),
      [
        'per_listener_settings false',
        'allow_anonymous false',
        'persistence false',
        `pid_file ${f('run/mosquitto.pid')}`,
        'log_dest stderr',
        'log_type all',
        ...listener(ports.cafile, [`cafile ${f('bundle.pem')}`]),
        ...listener(ports.capath, [`capath ${f('capath')}`]),
        ...listener(ports.cafileCrl, [`cafile ${f('bundle-crl.pem')}`, `crlfile ${f('crls.pem')}`]),
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    writeFileSync(f(RENDER_OPTIONS_FILE), JSON.stringify({ port: ports.cafile, pidFile: f('run/mosquitto.pid') }));
    broker = await start();
  }, scaled(120_000));
  afterAll(async () => {
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, scaled(60_000));

  it('at start every listener trusts A only (the controls)', async () => {
    expect(await outcomes('a')).toEqual({ cafile: 'accepted', capath: 'accepted', cafileCrl: 'accepted' });
    expect(await outcomes('b')).toEqual({ cafile: 'unknown_ca', capath: 'unknown_ca', cafileCrl: 'unknown_ca' });
  });

  it('capath: a CA added is trusted at the next handshake, without a reload', async () => {
    const logged = broker.logs().length;
    put(f(join('capath', hashName('claimB'))), pem('claimB.crt'));
    expect(await outcome(ports.capath, 'b')).toBe('accepted');
    expect(broker.logs().slice(logged)).not.toMatch(/Reloading config/);
  });

  it('SIGHUP: a CA appended to a cafile is trusted after the reload only where the listener has a crlfile', async () => {
    put(f('bundle.pem'), pem('claimA.crt') + pem('claimB.crt'));
    put(f('crls.pem'), pem('claimA.crl') + pem('claimB.crl'));
    put(f('bundle-crl.pem'), pem('claimA.crt') + pem('claimB.crt'));
    const logged = broker.logs().length;
    process.kill(broker.pid, 'SIGHUP');
    await broker.waitForLog(/Reloading config/, scaled(20_000), logged);
    // The reload is done within the loop iteration that logged it: a handshake after the line sees its result.
    expect(await outcome(ports.cafileCrl, 'b')).toBe('accepted');
    expect(await outcome(ports.cafile, 'b')).toBe('unknown_ca');
    expect(await outcome(ports.cafile, 'a')).toBe('accepted');
  });

  it('capath: a CA removed stays trusted by the running broker (OpenSSL keeps what it loaded) until a restart; a restart reads every cafile', async () => {
    unlinkSync(f(join('capath', hashName('claimA'))));
    expect(await outcome(ports.capath, 'a')).toBe('accepted');
    await broker.stop();
    broker = await start();
    expect(await outcomes('a')).toEqual({ cafile: 'accepted', capath: 'unknown_ca', cafileCrl: 'accepted' });
    expect(await outcomes('b')).toEqual({ cafile: 'accepted', capath: 'accepted', cafileCrl: 'accepted' });
  }, scaled(120_000));
});
