/**
 * Real Mosquitto 2.0 with device mutual TLS, independent of the rest of certfleet: a Device CA
 * and client certificates made with openssl, CRLs made with `openssl ca -gencrl`, the broker
 * configured by writeBrokerConfig and reloaded by createBrokerReloader (no manual SIGHUP).
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderMosquittoConfig } from '../src/broker/mosquitto-config.ts';
import { DYNSEC_RESPONSE_TOPIC, DYNSEC_TOPIC, SessionKickError, createSessionKicker } from '../src/broker/session-kicker.ts';
import { hashDynsecPassword } from '../src/broker/dynamic-security.ts';
import { type BrokerConfigResult, writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { BrokerReloadError, createBrokerReloader } from '../src/broker/broker-reloader.ts';
import { type RunningMosquitto, startMosquitto } from './support/mosquitto.ts';
import { connectWithMqttJs, openWatchedClient, publishWithMosquittoPub, type WatchedClient } from './support/mqtt-clients.ts';
import { silentLogger } from '../src/support/logger.ts';

const execFileAsync = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let tmp: string;
let caDir: string;
let crlPath: string;
let deviceCaPem: string;

const CA_CNF = `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
database = ./index.txt
serial = ./serial
crlnumber = ./crlnumber
certificate = ./ca.crt
private_key = ./ca.key
new_certs_dir = ./issued
default_md = sha256
default_days = 30
default_crl_days = 7
unique_subject = no
policy = policy_cn
copy_extensions = none
[ policy_cn ]
commonName = supplied
[ device_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
`;

async function openssl(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('openssl', args, { cwd: caDir });
  return stdout;
}

/** A device key + certificate signed by the test Device CA (recorded in index.txt for revocation). */
async function issueDevice(name: string, commonName: string) {
  const key = path.join(caDir, `${name}.key`);
  const csr = path.join(caDir, `${name}.csr`);
  const cert = path.join(caDir, `${name}.crt`);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${commonName.replace(/\//g, '\\/')}`]);
  await openssl(['ca', '-batch', '-config', 'ca.cnf', '-extensions', 'device_cert', '-notext', '-in', csr, '-out', cert]);
  return { key, cert, commonName };
}

/** Regenerate the CRL and put it in place atomically (temp file in the same folder + rename). */
async function publishCrl(): Promise<void> {
  const tmpFile = path.join(path.dirname(crlPath), `.device-crl.${randomUUID()}.tmp`);
  await openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', tmpFile]);
  await chmod(tmpFile, 0o644); // a CRL is public; the broker reads it as user mosquitto
  await rename(tmpFile, crlPath);
}

async function revoke(cert: string): Promise<void> {
  await openssl(['ca', '-config', 'ca.cnf', '-revoke', cert, '-crl_reason', 'superseded']);
  await publishCrl();
}

type Device = Awaited<ReturnType<typeof issueDevice>>;
let a1: Device; // CN t1/dev1, revoked in the CRL-reload tests
let a2: Device; // CN t1/dev1, its successor
let b1: Device; // CN t1/dev2, revoked in the session tests
let b2: Device; // CN t1/dev2, its successor
let c1: Device; // CN t1/dev3, never revoked

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'certfleet-broker-'));
  await chmod(tmp, 0o755); // the broker runs as user mosquitto when started as root
  caDir = path.join(tmp, 'device-ca');
  await mkdir(path.join(caDir, 'issued'), { recursive: true });
  await writeFile(path.join(caDir, 'ca.cnf'), CA_CNF);
  await writeFile(path.join(caDir, 'index.txt'), '');
  await writeFile(path.join(caDir, 'serial'), '1000\n');
  await writeFile(path.join(caDir, 'crlnumber'), '1000\n');
  await openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
    '-days', '365', '-subj', '/CN=certfleet test Device CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  deviceCaPem = await readFile(path.join(caDir, 'ca.crt'), 'utf8');
  // One at a time: `openssl ca` keeps its serial and index in files.
  a1 = await issueDevice('a1', 't1/dev1');
  a2 = await issueDevice('a2', 't1/dev1');
  b1 = await issueDevice('b1', 't1/dev2');
  b2 = await issueDevice('b2', 't1/dev2');
  c1 = await issueDevice('c1', 't1/dev3');
  await mkdir(path.join(tmp, 'crl'), { mode: 0o755 });
  crlPath = path.join(tmp, 'crl', 'device-crl.pem');
  await publishCrl(); // empty CRL
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** An mqtt.js subscriber that records what arrives. */
async function monitor(options: mqtt.IClientOptions) {
  const client = await mqtt.connectAsync({ ...options, reconnectPeriod: 0, protocolVersion: 5 });
  const received: string[] = [];
  client.on('message', (_topic, payload) => received.push(payload.toString()));
  await client.subscribeAsync('tenant/#', { qos: 1 });
  return {
    client,
    received,
    async expectMessage(message: string, timeoutMs = 30_000) {
      const until = Date.now() + timeoutMs;
      while (!received.includes(message)) {
        if (Date.now() > until) throw new Error(`message ${message} did not arrive; got ${JSON.stringify(received)}`);
        await sleep(20);
      }
    },
  };
}

describe('writeBrokerConfig + Mosquitto mTLS + CRL reload', () => {
  let broker: RunningMosquitto;
  let config: BrokerConfigResult;
  let outDir: string;
  let cafile: string;
  let watcher: Awaited<ReturnType<typeof monitor>>;

  beforeAll(async () => {
    outDir = path.join(tmp, 'broker');
    // This block is about TLS and CRL reloads; a device (c1) watches the others' topics, so the
    // ACL is the permissive one here (topic isolation: test/broker-acl.test.ts).
    config = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath, acl: { permissive: true } });
    cafile = config.files.combinedCa;
    broker = await startMosquitto({ configDir: outDir });
    watcher = await monitor({
      host: 'localhost',
      port: broker.port,
      protocol: 'mqtts',
      ca: await readFile(cafile),
      cert: await readFile(c1.cert),
      key: await readFile(c1.key),
    });
  });

  afterAll(async () => {
    await watcher?.client.endAsync(true);
    await broker?.stop();
  });

  it('writes the server PKI, the CA bundle and a config with protected key files', async () => {
    const conf = await readFile(config.files.config, 'utf8');
    expect(conf).toContain(`listener ${broker.port} localhost`);
    for (const line of [
      `cafile ${config.files.deviceCaCert}`,
      `certfile ${config.files.serverCert}`,
      `keyfile ${config.files.serverKey}`,
      'require_certificate true',
      'use_identity_as_username true',
      // the CRL hash folder layout (issue 22): the CRL file is looked up through capath, the crlfile a placeholder
      `capath ${crlPath}.hash`,
      `crlfile ${config.files.crlPlaceholder}`,
      `pid_file ${config.files.pidFile}`,
      'allow_anonymous false',
      'persistence false',
    ]) {
      expect(conf).toContain(line);
    }
    expect(conf).not.toContain('plugin ');

    const keyStat = await stat(config.files.serverKey);
    expect(keyStat.mode & 0o007).toBe(0);
    expect(keyStat.mode & 0o777).toBe(0o640);
    const combined = await readFile(config.files.combinedCa, 'utf8');
    expect(combined.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);

    const { stdout } = await execFileAsync('openssl', ['verify', '-CAfile', config.files.serverCaCert, '-purpose', 'sslserver', config.files.serverCert]);
    expect(stdout).toContain('OK');
    const { stdout: text } = await execFileAsync('openssl', ['x509', '-in', config.files.serverCert, '-noout', '-ext', 'subjectAltName,extendedKeyUsage']);
    expect(text).toContain('DNS:localhost');
    expect(text).toContain('IP Address:127.0.0.1');
    expect(text).toContain('IP Address:0:0:0:0:0:0:0:1');
    expect(text).toContain('TLS Web Server Authentication');

    if (isRoot) {
      expect(keyStat.gid).not.toBe(0);
      expect(config.lines.some((l) => l.startsWith('chown root:mosquitto') && l.includes('server.key'))).toBe(true);
      expect(config.lines.some((l) => l.includes(path.dirname(config.files.pidFile)) && l.includes('0770'))).toBe(true);
    }
    // Run again: the valid server certificate is kept (clients' combined-ca.crt stays valid).
    const before = await readFile(config.files.serverCert, 'utf8');
    const again = await writeBrokerConfig({ outDir: path.join(tmp, 'broker'), deviceCaCertPem: deviceCaPem, crlPath, port: broker.port, acl: { permissive: true } });
    expect(again.lines.join('\n')).toContain('kept the existing server certificate');
    expect(await readFile(config.files.serverCert, 'utf8')).toBe(before);
  });

  it('accepts both certificates of a device (mosquitto_pub and mqtt.js)', async () => {
    for (const device of [a1, a2]) {
      const message = `hello-${path.basename(device.cert)}-${randomUUID()}`;
      const pub = await publishWithMosquittoPub({ port: broker.port, cafile, cert: device.cert, key: device.key, topic: 'tenant/t1/device/dev1/telemetry', message });
      expect(pub, pub.output).toMatchObject({ ok: true, code: 0 });
      await watcher.expectMessage(message);
      expect(await connectWithMqttJs({ port: broker.port, cafile, cert: device.cert, key: device.key })).toBe(true);
    }
  });

  it('refuses a revoked certificate after reload, and the other one keeps working', async () => {
    await revoke(a1.cert);
    const offset = broker.logs().length;
    await createBrokerReloader({ pidFile: broker.pidFile }).reload();
    await broker.waitForLog(/Reloading config/, 30_000, offset);

    const refused = await publishWithMosquittoPub({ port: broker.port, cafile, cert: a1.cert, key: a1.key, topic: 'tenant/t1/device/dev1/telemetry', message: 'from-revoked' });
    expect(refused.ok, refused.output).toBe(false);
    expect(await connectWithMqttJs({ port: broker.port, cafile, cert: a1.cert, key: a1.key })).toBe(false);
    expect(broker.logs().slice(offset)).toMatch(/certificate revoked|certificate verify failed/);

    const message = `still-works-${randomUUID()}`;
    const ok = await publishWithMosquittoPub({ port: broker.port, cafile, cert: a2.cert, key: a2.key, topic: 'tenant/t1/device/dev1/telemetry', message });
    expect(ok, ok.output).toMatchObject({ ok: true, code: 0 });
    await watcher.expectMessage(message);
    expect(await connectWithMqttJs({ port: broker.port, cafile, cert: a2.cert, key: a2.key })).toBe(true);
    expect(watcher.received).not.toContain('from-revoked');
  });

  it('reloads through a configured command, and reports command failures', async () => {
    const offset = broker.logs().length;
    const logged: string[] = [];
    const reloader = createBrokerReloader({
      command: `kill -HUP "$(cat '${broker.pidFile}')"`,
      logger: { ...silentLogger, info: (_obj, msg) => void logged.push(msg) },
    });
    expect(reloader.configured).toBe(true);
    await reloader.reload();
    await broker.waitForLog(/Reloading config/, 30_000, offset);
    expect(logged).toContain('broker reload command succeeded');

    const failing = createBrokerReloader({ command: 'echo boom >&2; exit 3' });
    await expect(failing.reload()).rejects.toThrow(BrokerReloadError);
    await expect(failing.reload()).rejects.toThrow(/exited with code 3.*boom/);

    const slow = createBrokerReloader({ command: 'sleep 5', timeoutMs: 300 });
    const started = Date.now();
    await expect(slow.reload()).rejects.toThrow(/timed out after 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('fails clearly on a missing, garbled or stale pid file, and never signals a non-broker process', async () => {
    const dir = path.join(tmp, 'pids');
    await mkdir(dir, { recursive: true });

    await expect(createBrokerReloader({ pidFile: path.join(dir, 'missing.pid') }).reload()).rejects.toThrow(/does not exist/);

    const garbled = path.join(dir, 'garbled.pid');
    await writeFile(garbled, 'mosquitto\n');
    await expect(createBrokerReloader({ pidFile: garbled }).reload()).rejects.toThrow(/does not hold a PID/);

    // A PID that no longer exists.
    const gone = spawn('true');
    const gonePid = gone.pid as number;
    await new Promise((r) => gone.once('exit', r));
    const stale = path.join(dir, 'stale.pid');
    await writeFile(stale, `${gonePid}\n`);
    const error = await createBrokerReloader({ pidFile: stale }).reload().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerReloadError);
    expect((error as Error).message).toMatch(/stale broker pid file .*no process with PID/);

    // A PID reused by another program: SIGHUP would kill it, so the reloader refuses.
    const other = spawn('sleep', ['30']);
    try {
      const reused = path.join(dir, 'reused.pid');
      await writeFile(reused, `${other.pid}\n`);
      await expect(createBrokerReloader({ pidFile: reused }).reload()).rejects.toThrow(/is "sleep", not mosquitto/);
      expect(other.exitCode).toBeNull();
      expect(other.signalCode).toBeNull();
    } finally {
      other.kill('SIGKILL');
    }

    // The pid is read on every reload, never cached.
    const moving = path.join(dir, 'moving.pid');
    await writeFile(moving, `${broker.pid}\n`);
    const reloader = createBrokerReloader({ pidFile: moving });
    await reloader.reload();
    await writeFile(moving, `${gonePid}\n`);
    await expect(reloader.reload()).rejects.toThrow(BrokerReloadError);

    const unconfigured = createBrokerReloader({});
    expect(unconfigured.configured).toBe(false);
    await expect(unconfigured.reload()).resolves.toBeUndefined();
  });

  it('Mosquitto refuses to start while the crlfile does not exist (--crl-layout crlfile)', async () => {
    const outDir2 = path.join(tmp, 'broker-no-crl');
    const missingCrl = path.join(tmp, 'crl', 'not-yet.pem');
    const result = await writeBrokerConfig({ outDir: outDir2, deviceCaCertPem: deviceCaPem, crlPath: missingCrl, crlLayout: 'crlfile' });
    expect(result.lines.join('\n')).toMatch(/not-yet\.pem does not exist yet/);
    await expect(startMosquitto({ configDir: outDir2 })).rejects.toThrow(/Unable to load certificate revocation file/);
  });

  it('capath layout: Mosquitto starts without the CRL file (the placeholder is there) and refuses every device until it exists (fail closed)', async () => {
    const outDir3 = path.join(tmp, 'broker-no-crl-capath');
    const missingCrl = path.join(tmp, 'crl', 'not-yet-capath.pem');
    const result = await writeBrokerConfig({ outDir: outDir3, deviceCaCertPem: deviceCaPem, crlPath: missingCrl, acl: { permissive: true } });
    expect(result.lines.join('\n')).toMatch(/not-yet-capath\.pem does not exist yet/);
    const b = await startMosquitto({ configDir: outDir3 });
    try {
      const files = { port: b.port, cafile: result.files.combinedCa, cert: a2.cert, key: a2.key };
      expect(await connectWithMqttJs(files)).toBe(false);
      // The CRL in place (what the publisher writes) and a reload: accepted.
      await writeFile(missingCrl, await readFile(crlPath));
      const offset = b.logs().length;
      process.kill(b.pid, 'SIGHUP');
      await b.waitForLog(/Reloading config/, 30_000, offset);
      expect(await connectWithMqttJs(files)).toBe(true);
    } finally {
      await b.stop();
    }
  });
});

describe('connected sessions: reload + kick through the dynamic security plugin', () => {
  const adminPassword = `pw-${randomUUID()}`;
  let broker: RunningMosquitto;
  let config: BrokerConfigResult;
  let cafile: string;
  let adminUrl: string;
  let watcher: Awaited<ReturnType<typeof monitor>>;
  const sessions: WatchedClient[] = [];

  beforeAll(async () => {
    const outDir = path.join(tmp, 'broker-dynsec');
    const devices = ['dev1', 'dev2', 'dev3'].map((deviceId) => ({ tenantId: 't1', deviceId }));
    config = await writeBrokerConfig({ outDir, deviceCaCertPem: deviceCaPem, crlPath, dynamicSecurity: { adminPassword }, acl: { devices } });
    cafile = config.files.combinedCa;
    broker = await startMosquitto({ configDir: outDir });
    adminUrl = `mqtt://127.0.0.1:${broker.adminPort}`;
    // The admin (password login on the admin listener) watches the device topics.
    watcher = await monitor({ host: '127.0.0.1', port: broker.adminPort, protocol: 'mqtt', username: 'certfleet-admin', password: adminPassword });
  });

  afterAll(async () => {
    if (process.env.SHOW_BROKER_LOGS) {
      console.log(broker?.logs());
      console.log(`session errors: ${JSON.stringify(sessions.map((s) => s.errors))}`);
    }
    for (const s of sessions) await s.end();
    await watcher?.client.endAsync(true);
    await broker?.stop();
  });

  async function dynsec(commands: object[]): Promise<Array<{ command: string; error?: string; data?: unknown }>> {
    const client: MqttClient = await mqtt.connectAsync(adminUrl, { username: 'certfleet-admin', password: adminPassword, reconnectPeriod: 0, protocolVersion: 5 });
    try {
      await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC);
      const response = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
      await client.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands }));
      return (JSON.parse(await response) as { responses: Array<{ command: string; error?: string; data?: unknown }> }).responses;
    } finally {
      await client.endAsync(true);
    }
  }

  it('renders the plugin, the acl_file and an admin listener; the dynsec hash matches mosquitto_ctrl', async () => {
    const conf = await readFile(config.files.config, 'utf8');
    expect(conf).toMatch(/^plugin \/.*mosquitto_dynamic_security\.so$/m);
    expect(conf).toContain(`plugin_opt_config_file ${config.files.dynsecConfig}`);
    expect(conf).toContain(`acl_file ${config.files.aclFile}`);
    expect(conf).toContain(`listener ${broker.adminPort} 127.0.0.1`);
    const acl = await readFile(config.files.aclFile as string, 'utf8');
    expect(acl).not.toMatch(/^pattern readwrite/m);
    expect(acl).toContain('user certfleet-admin\ntopic readwrite $CONTROL/dynamic-security/#\ntopic read tenant/#');
    expect(acl).toContain('user t1/dev3\ntopic readwrite tenant/t1/device/dev3/#');
    expect((await stat(config.files.dynsecConfig as string)).mode & 0o007).toBe(0);

    // Our PBKDF2 hash is the one Mosquitto's own tool writes.
    const ctrlFile = path.join(tmp, 'ctrl-init.json');
    await execFileAsync('mosquitto_ctrl', ['dynsec', 'init', ctrlFile, 'someone', 's3cret']);
    const written = JSON.parse(await readFile(ctrlFile, 'utf8')) as { clients: Array<{ password: string; salt: string; iterations: number }> };
    const [entry] = written.clients;
    const ours = await hashDynsecPassword('s3cret', Buffer.from(entry.salt, 'base64'), entry.iterations);
    expect(ours).toEqual({ password: entry.password, salt: entry.salt, iterations: entry.iterations });
  });

  it('lets devices publish but not reach $CONTROL, and keeps the admin listener password-only', async () => {
    const message = `dynsec-device-${randomUUID()}`;
    const pub = await publishWithMosquittoPub({ port: broker.port, cafile, cert: c1.cert, key: c1.key, topic: 'tenant/t1/device/dev3/telemetry', message });
    expect(pub, pub.output).toMatchObject({ ok: true });
    await watcher.expectMessage(message);

    const control = await publishWithMosquittoPub({ port: broker.port, cafile, cert: c1.cert, key: c1.key, topic: DYNSEC_TOPIC, message: '{"commands":[{"command":"listClients"}]}' });
    expect(control.ok).toBe(false);
    expect(control.output).toMatch(/Not authorized/i);

    for (const credentials of [{}, { username: 't1/dev3' }, { username: 'certfleet-admin', password: 'wrong' }]) {
      await expect(mqtt.connectAsync(adminUrl, { ...credentials, reconnectPeriod: 0, protocolVersion: 5 }, false)).rejects.toThrow();
    }
    const bad = createSessionKicker({ url: adminUrl, username: 'certfleet-admin', password: 'wrong', timeoutMs: 3000 });
    await expect(bad.kick('t1/dev3')).rejects.toThrow(SessionKickError);
  });

  it('disconnects the revoked certificate’s live session; the new certificate reconnects, the revoked one cannot', async () => {
    const revoked = await openWatchedClient({ port: broker.port, cafile, cert: b1.cert, key: b1.key, clientId: 'dev2-old' });
    const current = await openWatchedClient({ port: broker.port, cafile, cert: b2.cert, key: b2.key, clientId: 'dev2-new' });
    sessions.push(revoked, current);

    await revoke(b1.cert);
    const offset = broker.logs().length;
    await createBrokerReloader({ pidFile: broker.pidFile }).reload();
    await broker.waitForLog(/Reloading config/, 30_000, offset);

    // The problem: after the reload the revoked session is still open and still publishes.
    await sleep(200);
    expect(revoked.connected).toBe(true);
    const leak = `after-reload-${randomUUID()}`;
    await revoked.client.publishAsync('tenant/t1/device/dev2/telemetry', leak, { qos: 1 });
    await watcher.expectMessage(leak);

    // The fix: kick every session of the CN.
    const kicker = createSessionKicker({ url: adminUrl, username: 'certfleet-admin', password: adminPassword });
    const result = await kicker.kick('t1/dev2');
    expect(result).toEqual({ commonName: 't1/dev2', method: 'create-delete' });
    await broker.waitForLog(/disconnected by administrative action/, 30_000, offset);

    await revoked.waitFor(() => revoked.closes > 0, 30_000, 'revoked session closed');
    await current.waitFor(() => current.connects >= 2 && current.connected, 30_000, 'current session reconnected');
    // Several reconnect attempts (every 200 ms) of the revoked certificate all fail: wait until three were refused.
    await revoked.waitFor(() => revoked.errors.length >= 3, 60_000, 'three refused reconnect attempts');
    expect(revoked.connected).toBe(false);
    expect(revoked.connects).toBe(1);
    expect(revoked.errors.length + revoked.closes).toBeGreaterThan(1);
    expect(revoked.errors.join('\n')).toMatch(/alert certificate revoked/); // TLS alert 44 from the broker

    const fresh = `after-kick-${randomUUID()}`;
    await current.client.publishAsync('tenant/t1/device/dev2/telemetry', fresh, { qos: 1 });
    await watcher.expectMessage(fresh);
    expect(await connectWithMqttJs({ port: broker.port, cafile, cert: b1.cert, key: b1.key })).toBe(false);
    expect(await connectWithMqttJs({ port: broker.port, cafile, cert: b2.cert, key: b2.key })).toBe(true);

    // Nothing is left behind in the plugin.
    const [listed] = await dynsec([{ command: 'listClients' }]);
    expect(JSON.stringify(listed.data)).not.toContain('t1/dev2');
  });

  it('kicks a CN that is a dynsec client with disable+enable and leaves the client enabled', async () => {
    await dynsec([{ command: 'createClient', username: 't1/dev3' }]);
    const session = await openWatchedClient({ port: broker.port, cafile, cert: c1.cert, key: c1.key, clientId: 'dev3' });
    sessions.push(session);
    const kicker = createSessionKicker({ url: adminUrl, username: 'certfleet-admin', password: adminPassword });
    expect(await kicker.kick('t1/dev3')).toEqual({ commonName: 't1/dev3', method: 'disable-enable' });
    await session.waitFor(() => session.connects >= 2 && session.connected, 30_000, 'reconnect after kick');
    const [client] = await dynsec([{ command: 'getClient', username: 't1/dev3' }]);
    expect(client.error).toBeUndefined();
    expect(JSON.stringify(client.data)).not.toContain('"disabled":true');
    await dynsec([{ command: 'deleteClient', username: 't1/dev3' }]);
  });
});

describe('renderMosquittoConfig', () => {
  it('rejects values that would inject config lines', () => {
    const base = { bindAddress: 'localhost', deviceCaFile: '/a', certFile: '/b', keyFile: '/c', crlFile: '/d' };
    expect(() => renderMosquittoConfig({ ...base, crlFile: '/d\nallow_anonymous true' })).toThrow(TypeError);
    expect(() => renderMosquittoConfig({ ...base, port: 70000 })).toThrow(TypeError);
    expect(renderMosquittoConfig(base)).toContain('listener 8883 localhost');
  });
});
