/**
 * Factory (claim) onboarding over MQTT (issue 21, item 1), with a real Mosquitto configured by
 * `certfleet broker-config --acl-plugin --provisioning-port` and run as written, and mqtt.js (and
 * mosquitto_pub) as the devices. A device with a claim certificate of its tenant's claim CA logs
 * in on the provisioning listener as `certfleet-claim:<sha256 of its claim certificate>`,
 * publishes a request signed with its claim key and reads its first operational certificate.
 *
 * The attacks: claim client X reading Y's answer (directly, with wildcards, with $share),
 * publishing as Y, logging in as Y or as a device, taking over a device's session; a device
 * certificate on the provisioning listener, a claim certificate on the device listener, a claim of
 * an unregistered CA, a claim of another tenant's CA naming this tenant, a claim whose CN names a
 * device, a replayed request. The provisioning listener's capath follows the tenants' claim CAs.
 */
import { execFile, spawnSync } from 'node:child_process';
import { X509Certificate, createHash, createPrivateKey, sign } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceCa, writeDeviceCa } from '../src/pki/device-ca.ts';
import { provisioningSigningText } from '../src/renewal/claim-onboarding.ts';
import { cliHere } from './support/cli-here.ts';
import { aclPluginPath } from './support/acl-plugin.ts';
import { createTestDatabase, oneDriver, type TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';

const exec = promisify(execFile);

interface Answer {
  request_id: string | null;
  server_time?: string;
  device_id?: string;
  cert_pem?: string;
  ca_cert_pem?: string;
  replayed?: boolean;
  problem?: { code: string; status: number; detail: string };
}

// On Postgres only (oneDriver): the broker, its ACL plugin and the claim flow are the subject, and
// the claim flow's SQL is the same on both drivers; test/claim-onboarding.test.ts runs the same
// use case over HTTP on PGlite. CERTFLEET_TEST_ALL_DRIVERS=1 runs this file on both.
describe.each(oneDriver('pg'))('MQTT provisioning with a claim certificate (real Mosquitto, broker-config --provisioning-port, %s)', (kind) => {
  let tmp: string;
  let database: TestDatabase;
  let broker: RunningMosquitto;
  let t: TestService;
  let port: number;
  let provisioningPort: number;
  let combinedCa: string;
  let claimCaDir: string;
  const open: MqttClient[] = [];

  const file = (name: string) => join(tmp, name);
  const openssl = async (args: string[]) => (await exec('openssl', args, { cwd: tmp })).stdout;
  const digest = (name: string) => createHash('sha256').update(new X509Certificate(readFileSync(file(`${name}.crt`))).raw).digest('hex');
  const requestTopic = (name: string) => `certfleet/provision/${digest(name)}/request`;
  const responseTopic = (name: string) => `certfleet/provision/${digest(name)}/response`;

  async function makeCa(name: string, subject: string) {
    await openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3650',
      '-subj', subject, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }

  /** A claim certificate `${name}.crt` of `ca`, as a factory burns it into a device (the CN is the manufacturer's choice). */
  async function makeClaim(name: string, ca: string, cn: string) {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', `/CN=${cn}/O=Manufacturer`, '-out', `${name}.req`]);
    writeFileSync(file(`${name}.ext`), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
    await openssl([
      'x509', '-req', '-in', `${name}.req`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-days', '365', '-sha256',
      '-set_serial', `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`, '-extfile', `${name}.ext`, '-out', `${name}.crt`,
    ]);
  }

  async function csrPem(name: string): Promise<string> {
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=unused', '-out', `${name}.csr`]);
    return readFileSync(file(`${name}.csr`), 'utf8');
  }

  /** The request a device signs with its claim key (docs/device-provisioning.md). */
  function signedRequest(requestId: string, tenant: string, csr: string, claim: { cert: string; key: string }, signedAt = Math.floor(Date.now() / 1000)) {
    return {
      request_id: requestId,
      tenant_id: tenant,
      claim_cert_pem: readFileSync(file(`${claim.cert}.crt`), 'utf8'),
      csr_pem: csr,
      signed_at: signedAt,
      signature: sign('sha256', Buffer.from(provisioningSigningText(requestId, signedAt, csr)), createPrivateKey(readFileSync(file(`${claim.key}.key`)))).toString('base64'),
    };
  }

  /** A connection to the provisioning listener with claim certificate `name`, logged in as certfleet-claim:<its sha256> unless told otherwise. */
  async function claimClient(name: string, options: { username?: string | null; clientId?: string; onMessage?: (topic: string, payload: Buffer) => void } = {}): Promise<MqttClient> {
    const username = options.username === undefined ? `certfleet-claim:${digest(name)}` : options.username;
    const client = await mqtt.connectAsync(
      `mqtts://localhost:${provisioningPort}`,
      {
        ...tlsOptions({ port: provisioningPort, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }),
        ...(username === null ? {} : { username }),
        ...(options.clientId ? { clientId: options.clientId } : {}),
        protocolVersion: 5,
        reconnectPeriod: 0,
        connectTimeout: 20_000,
      },
      false,
    );
    if (options.onMessage) client.on('message', options.onMessage);
    open.push(client);
    return client;
  }

  async function deviceClient(name: string, clientId?: string): Promise<MqttClient> {
    const client = await mqtt.connectAsync(
      `mqtts://localhost:${port}`,
      { ...tlsOptions({ port, cafile: combinedCa, cert: file(`${name}.crt`), key: file(`${name}.key`) }), protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 20_000, ...(clientId ? { clientId } : {}) },
      false,
    );
    open.push(client);
    return client;
  }

  /** Subscribes to its own answer topic, publishes `message` on its own request topic, and waits for the answer to that request id. */
  async function ask(client: MqttClient, name: string, message: { request_id: string }, topic = requestTopic(name)): Promise<Answer> {
    const answered = new Promise<Answer>((resolve) => {
      client.on('message', (got, payload) => {
        const answer = JSON.parse(payload.toString()) as Answer;
        if (got === responseTopic(name) && answer.request_id === message.request_id) resolve(answer);
      });
    });
    const [granted] = await client.subscribeAsync(responseTopic(name), { qos: 1 });
    expect(granted!.qos).toBeLessThan(3);
    await client.publishAsync(topic, JSON.stringify(message), { qos: 1 });
    return answered;
  }

  /** Granted QoS of a subscription; 128 when the broker refused it (MQTT 5 SUBACK 0x87 Not authorized, which mqtt.js throws). */
  const subscribe = async (client: MqttClient, filter: string) => {
    try {
      return (await client.subscribeAsync(filter, { qos: 1 }))[0]!.qos;
    } catch (e) {
      if (/not authori[sz]ed/i.test((e as Error).message)) return 128;
      throw e;
    }
  };

  const deviceCount = async (tenant: string) => (await t.call(tenant, 'GET', '/api/v1/customer/devices?limit=500')).json.devices.length as number;
  const refusals = async (tenant: string) =>
    (await t.call(tenant, 'GET', '/api/v1/customer/audit-events?action=claim.enrollment_refused&limit=500')).json.audit_events as { details: Record<string, unknown>; target_id: string }[];

  /** Connects until the provisioning listener accepts this claim (its CA reached the capath); a wait on readiness, with a deadline. */
  async function untilAccepted(name: string): Promise<void> {
    const deadline = Date.now() + scaled(30_000);
    for (;;) {
      try {
        const client = await claimClient(name);
        await client.endAsync();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`${(e as Error).message}\nbroker log:\n${broker.logs().slice(-3000)}`);
      }
    }
  }

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'certfleet-mqtt-provisioning-'));
    chmodSync(tmp, 0o755);
    mkdirSync(file('crl'), { mode: 0o755 });
    database = await createTestDatabase(kind);
    const ca = await createDeviceCa({ now: new Date(), commonName: 'certfleet mqtt-provisioning Device CA' });
    await writeDeviceCa(ca, file('ca/device-ca.crt'), file('ca/device-ca.key'));
    let env: Record<string, string> = {
      ...(database.url ? { DATABASE_URL: database.url } : {}),
      CERTFLEET_AUTH: 'development',
      DEVICE_CA_CERT_PATH: file('ca/device-ca.crt'),
      DEVICE_CA_KEY_PATH: file('ca/device-ca.key'),
      CRL_OUTPUT_PATH: file('crl/device-crl.pem'),
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    };
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await freePort());
    const [p1, p2, p3] = [...ports];
    port = p1!;
    provisioningPort = p3!;
    // PGlite: the CLI opens its own data dir (it finds no claim CA there); Postgres: the test's database.
    // In this process (test/config-scope.test.ts runs broker-config as a process).
    const res = await cliHere(
      ['broker-config', '--out', file('broker'), '--port', String(p1), '--admin-port', String(p2), '--provisioning-port', String(p3), '--acl-plugin', aclPluginPath(), '--json'],
      { ...env, CERTFLEET_DATA_DIR: file('cli-data') },
    );
    if (res.status !== 0) throw new Error(`broker-config failed (${res.status}): ${res.stderr}`);
    const config = JSON.parse(res.stdout) as { env: Record<string, string>; files: { combinedCa: string; claimCaDir: string }; provisioning: { port: number; claimCaDir: string; claimCas: number } };
    expect(config.provisioning).toMatchObject({ port: p3, claimCas: 0 });
    expect(config.env).toMatchObject({ MQTT_PROVISIONING: 'true', BROKER_CLAIM_CA_PATH: config.files.claimCaDir });
    combinedCa = config.files.combinedCa;
    claimCaDir = config.files.claimCaDir;
    broker = await startMosquitto({ configDir: file('broker'), asWritten: true });
    env = { ...env, ...config.env };
    t = await startTestService(database, { dataDir: file('data'), env });
    await t.service.renewal.start(t.service.app.log);

    await makeCa('mfr', '/CN=Acme Manufacturing Claim CA');
    await makeCa('mfr2', '/CN=Globex Manufacturing Claim CA');
    await makeCa('rogue', '/CN=Rogue CA');
    // Two manufacturers' claims with the same CN, and one whose CN is a device CN.
    await makeClaim('x', 'mfr', 'SN-0001');
    await makeClaim('y', 'mfr', 'SN-0002');
    await makeClaim('globex-claim', 'mfr2', 'SN-0001');
    await makeClaim('cn-as-device', 'mfr', 'acme/victim');
    await makeClaim('unregistered', 'rogue', 'SN-0009');
  }, scaled(180_000));

  afterAll(async () => {
    await Promise.allSettled(open.map((c) => c.endAsync(true)));
    await t?.close();
    await broker?.stop();
    await database?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }, scaled(60_000));

  it('broker-config writes a listener that trusts only the claim CAs, with certfleet_acl deciding by certificate', () => {
    const conf = readFileSync(file('broker/mosquitto.conf'), 'utf8');
    expect(conf).toContain('plugin_opt_provisioning_topics true\n');
    expect(conf).toMatch(
      new RegExp(`listener ${provisioningPort} [^\\n]+\\ncapath ${claimCaDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\n(?:[^\\n]+\\n)*?require_certificate true\\nuse_identity_as_username false\\nuse_username_as_clientid true`),
    );
    // No claim CA yet: an empty directory (the listener admits no one), never the Device CA.
    expect(readdirSync(claimCaDir)).toEqual([]);
  });

  it('before its CA is registered a claim cannot even connect; registering the claim CA adds it to the capath, trusted without a reload', async () => {
    await expect(claimClient('x')).rejects.toThrow();
    const register = async (tenant: string, ca: string) =>
      t.call(tenant, 'POST', '/api/v1/customer/claim-cas', { ca_cert_pem: readFileSync(file(`${ca}.crt`), 'utf8') }, 'tenant-admin');
    expect((await register('acme', 'mfr')).status).toBe(201);
    expect((await register('globex', 'mfr2')).status).toBe(201);
    await t.service.renewal.claimCaFile()!.idle();
    // One <subject hash>.<n> file per claim CA, named as `openssl x509 -hash` names it.
    for (const ca of ['mfr', 'mfr2']) {
      const hash = (await openssl(['x509', '-in', `${ca}.crt`, '-noout', '-hash'])).trim();
      expect(readFileSync(join(claimCaDir, `${hash}.0`), 'utf8').trim()).toBe(readFileSync(file(`${ca}.crt`), 'utf8').trim());
    }
    expect(readdirSync(claimCaDir)).toHaveLength(2);
    // OpenSSL reads the capath at each handshake: accepted without a reload (the first attempt, or one soon after the write).
    await untilAccepted('x');
  });

  let xCertificateId: number;

  it('happy path: a claim client gets its device registered and its first certificate for its own key, and connects with it', async () => {
    const x = await claimClient('x');
    const answer = await ask(x, 'x', signedRequest('req-x-1', 'acme', await csrPem('dev-x'), { cert: 'x', key: 'x' }));
    expect(answer.problem, JSON.stringify(answer.problem)).toBeUndefined();
    expect(answer).toMatchObject({ request_id: 'req-x-1', device_id: 'SN-0001', replayed: false });
    expect(Date.parse(answer.server_time!)).not.toBeNaN();
    writeFileSync(file('dev-x.crt'), answer.cert_pem!);
    expect(await openssl(['x509', '-in', 'dev-x.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*acme\/SN-0001/);
    expect(await openssl(['x509', '-in', 'dev-x.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'dev-x.key', '-pubout']));
    const device = await deviceClient('dev-x');
    expect(device.connected).toBe(true);
    await device.endAsync();

    const audit = (await t.call('acme', 'GET', '/api/v1/customer/audit-events?action=claim.enrolled')).json.audit_events;
    expect(audit[0]).toMatchObject({ actor: `claim:sha256:${digest('x')}`, target_id: 'SN-0001', details: { transport: 'mqtt', claim_fingerprint: digest('x'), registered: true } });
    xCertificateId = audit[0].details.certificate_id;
    // The same claim and key again (a lost answer): the same certificate; another key: refused.
    const again = await ask(x, 'x', signedRequest('req-x-2', 'acme', readFileSync(file('dev-x.csr'), 'utf8'), { cert: 'x', key: 'x' }));
    expect(again).toMatchObject({ device_id: 'SN-0001', replayed: true, cert_pem: answer.cert_pem });
    const otherKey = await ask(x, 'x', signedRequest('req-x-3', 'acme', await csrPem('dev-x-other'), { cert: 'x', key: 'x' }));
    expect(otherKey.problem?.code).toBe('CLAIM_ALREADY_ENROLLED');
    await x.endAsync();
  });

  it('the device recipe of docs/device-provisioning.md: openssl signs, mosquitto_rr asks and prints the answer', async () => {
    await makeClaim('w', 'mfr', 'SN-0004');
    const sh = (script: string) => exec('sh', ['-c', script], { cwd: tmp });
    const sha = (await sh('openssl x509 -in w.crt -outform DER | openssl dgst -sha256 -r | cut -d" " -f1')).stdout.trim();
    expect(sha).toBe(digest('w'));
    const ts = Math.floor(Date.now() / 1000);
    await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w-device.key -subj /CN=device -out w-device.csr 2>/dev/null');
    await sh(`{ printf 'certfleet-provision:%s:%s\\n' rr-1 ${ts}; cat w-device.csr; } | openssl dgst -sha256 -sign w.key | openssl base64 -A > w-req.sig`);
    writeFileSync(
      file('w-request.json'),
      JSON.stringify({ request_id: 'rr-1', tenant_id: 'acme', claim_cert_pem: readFileSync(file('w.crt'), 'utf8'), csr_pem: readFileSync(file('w-device.csr'), 'utf8'), signed_at: ts, signature: readFileSync(file('w-req.sig'), 'utf8') }),
    );
    const { stdout } = await exec(
      'mosquitto_rr',
      ['--cafile', combinedCa, '-h', 'localhost', '-p', String(provisioningPort), '--cert', file('w.crt'), '--key', file('w.key'), '-u', `certfleet-claim:${sha}`, '-q', '1',
        '-t', `certfleet/provision/${sha}/request`, '-e', `certfleet/provision/${sha}/response`, '-m', readFileSync(file('w-request.json'), 'utf8'), '-W', '60'],
      { timeout: scaled(90_000) },
    );
    const answer = JSON.parse(stdout) as Answer;
    expect(answer.problem, stdout).toBeUndefined();
    expect(answer).toMatchObject({ request_id: 'rr-1', device_id: 'SN-0004', replayed: false });
    writeFileSync(file('w-device.crt'), answer.cert_pem!);
    expect(await openssl(['x509', '-in', 'w-device.crt', '-noout', '-pubkey'])).toBe(await openssl(['pkey', '-in', 'w-device.key', '-pubout']));
  });

  it('a replayed request is refused (the same signed request, published again)', async () => {
    const x = await claimClient('x');
    const request = signedRequest('req-x-replay', 'acme', readFileSync(file('dev-x.csr'), 'utf8'), { cert: 'x', key: 'x' });
    expect((await ask(x, 'x', request)).problem).toBeUndefined();
    const replay = await ask(x, 'x', request);
    expect(replay.problem?.code).toBe('REPLAYED_REQUEST');
    // Signed too long ago (a captured request kept for later).
    const stale = await ask(x, 'x', signedRequest('req-x-stale', 'acme', readFileSync(file('dev-x.csr'), 'utf8'), { cert: 'x', key: 'x' }, Math.floor(Date.now() / 1000) - 3600));
    expect(stale.problem?.code).toBe('REPLAYED_REQUEST');
    await x.endAsync();
  });

  it("claim client X cannot read Y's answer: not its topic, no wildcard, no $share, nothing delivered", async () => {
    const seenByX: string[] = [];
    const x = await claimClient('x', { onMessage: (topic) => seenByX.push(topic) });
    expect(await subscribe(x, responseTopic('y'))).toBe(128);
    expect(await subscribe(x, 'certfleet/provision/+/response')).toBe(128);
    expect(await subscribe(x, 'certfleet/provision/#')).toBe(128);
    expect(await subscribe(x, '#')).toBe(128);
    expect(await subscribe(x, `$share/steal/${responseTopic('y')}`)).toBe(128);
    expect(await subscribe(x, '$share/steal/certfleet/provision/+/response')).toBe(128);
    expect(await subscribe(x, 'certfleet/provision/+/request')).toBe(128);
    expect(await subscribe(x, 'tenant/#')).toBe(128);
    // Its own answer topic, also through $share, is allowed.
    expect(await subscribe(x, `$share/mine/${responseTopic('x')}`)).toBeLessThan(3);

    const y = await claimClient('y');
    const answer = await ask(y, 'y', signedRequest('req-y-1', 'acme', await csrPem('dev-y'), { cert: 'y', key: 'y' }));
    expect(answer).toMatchObject({ device_id: 'SN-0002' });
    // Y's answer was delivered; X, connected all along, got nothing of it.
    await x.publishAsync(requestTopic('x'), 'not json', { qos: 1 });
    await new Promise<void>((resolve) => x.on('message', (topic) => topic === responseTopic('x') && resolve()));
    expect(seenByX.filter((topic) => topic !== responseTopic('x'))).toEqual([]);
    await Promise.all([x.endAsync(), y.endAsync()]);
  });

  it("claim client X cannot publish as Y: Y's request topic is refused by the broker, and Y's certificate in X's request is refused by certfleet", async () => {
    const before = await deviceCount('acme');
    await makeClaim('z', 'mfr', 'SN-0003');
    const x = await claimClient('x');
    // Y's topic: the broker refuses the publish (MQTT 5 PUBACK 0x87), certfleet never sees it.
    const forged = signedRequest('req-forged-1', 'acme', await csrPem('forged-1'), { cert: 'z', key: 'x' });
    await expect(x.publishAsync(requestTopic('z'), JSON.stringify(forged), { qos: 1 })).rejects.toThrow(/authori[sz]ed|135/i);
    // X's own topic carrying Z's certificate: not the certificate of the connection.
    const carried = await ask(x, 'x', forged);
    expect(carried.problem?.code).toBe('FORBIDDEN');
    expect(carried.problem?.detail).toMatch(/not the claim certificate this connection authenticated with/);
    expect(await deviceCount('acme')).toBe(before);
    await x.endAsync();
  });

  it("a claim client cannot log in as another claim, as a device, without a username, or take over a device's session", async () => {
    await expect(claimClient('x', { username: `certfleet-claim:${digest('y')}` })).rejects.toThrow(/authori[sz]ed|135|134/i);
    await expect(claimClient('x', { username: 'acme/SN-0001' })).rejects.toThrow(/authori[sz]ed|135|134/i);
    await expect(claimClient('x', { username: 'certfleet-admin' })).rejects.toThrow(/authori[sz]ed|135|134/i);
    await expect(claimClient('x', { username: null })).rejects.toThrow();
    // mosquitto_pub, as a factory script would: the same refusal.
    const pub = spawnSync(
      'mosquitto_pub',
      ['-h', 'localhost', '-p', String(provisioningPort), '--cafile', combinedCa, '--cert', file('y.crt'), '--key', file('y.key'), '-u', `certfleet-claim:${digest('x')}`, '-t', requestTopic('x'), '-m', '{}', '-V', 'mqttv5'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(pub.status).not.toBe(0);

    // The client id is the username: asking for a device's client id does not disconnect the device.
    const device = await deviceClient('dev-x', 'SN-0001-session');
    let deviceClosed = false;
    device.on('close', () => (deviceClosed = true));
    const x = await claimClient('x', { clientId: 'SN-0001-session' });
    expect(x.connected).toBe(true);
    await x.endAsync();
    // A round trip on the device's own topic proves its session is still the live one.
    const echoed = new Promise<void>((resolve) => device.on('message', () => resolve()));
    await device.subscribeAsync('tenant/acme/device/SN-0001/echo', { qos: 1 });
    await device.publishAsync('tenant/acme/device/SN-0001/echo', 'still here', { qos: 1 });
    await echoed;
    expect(deviceClosed).toBe(false);
    await device.endAsync();
  });

  it("a claim whose CN is a device CN is not that device: it gets only its provisioning topics", async () => {
    await untilAccepted('cn-as-device');
    const c = await claimClient('cn-as-device');
    expect(await subscribe(c, 'tenant/acme/device/victim/#')).toBe(128);
    expect(await subscribe(c, 'certfleet/renew/acme/victim/response')).toBe(128);
    await expect(c.publishAsync('tenant/acme/device/victim/state', 'x', { qos: 1 })).rejects.toThrow(/authori[sz]ed|135/i);
    await c.endAsync();
  });

  it('a device certificate on the provisioning listener and a claim certificate on the device listener are refused by TLS', async () => {
    await expect(claimClient('dev-x', { username: `certfleet-claim:${digest('dev-x')}` })).rejects.toThrow();
    await expect(deviceClient('x')).rejects.toThrow();
  });

  it("a claim of an unregistered CA is refused by TLS; a claim of another tenant's CA naming this tenant is refused and audited, nothing issued", async () => {
    await expect(claimClient('unregistered')).rejects.toThrow();

    const before = await deviceCount('acme');
    const g = await claimClient('globex-claim');
    // globex's claim, same CN as acme's SN-0001, asking to join acme.
    const answer = await ask(g, 'globex-claim', signedRequest('req-g-1', 'acme', await csrPem('dev-g'), { cert: 'globex-claim', key: 'globex-claim' }));
    expect(answer.problem?.code).toBe('CLAIM_CA_UNKNOWN');
    expect(answer.cert_pem).toBeUndefined();
    expect(await deviceCount('acme')).toBe(before);
    expect((await refusals('acme')).some((e) => e.target_id === digest('globex-claim') && e.details.code === 'CLAIM_CA_UNKNOWN' && e.details.transport === 'mqtt')).toBe(true);
    // In its own tenant the same CN is another device: globex/SN-0001, not acme's.
    const own = await ask(g, 'globex-claim', signedRequest('req-g-2', 'globex', readFileSync(file('dev-g.csr'), 'utf8'), { cert: 'globex-claim', key: 'globex-claim' }));
    expect(own).toMatchObject({ device_id: 'SN-0001' });
    writeFileSync(file('dev-g.crt'), own.cert_pem!);
    expect(await openssl(['x509', '-in', 'dev-g.crt', '-noout', '-subject'])).toMatch(/CN\s*=\s*globex\/SN-0001/);
    const acmeDevice = (await t.call('acme', 'GET', '/api/v1/customer/devices/SN-0001/certificates')).json;
    expect(JSON.stringify(acmeDevice)).toContain(String(xCertificateId));
    await g.endAsync();
  });

  it('deleting a claim CA removes it from the capath, and certfleet refuses its claims at once', async () => {
    await makeClaim('globex-2', 'mfr2', 'SN-0777');
    const list = (await t.call('globex', 'GET', '/api/v1/customer/claim-cas')).json.claim_cas as { id: number }[];
    expect((await t.call('globex', 'DELETE', `/api/v1/customer/claim-cas/${list[0]!.id}`, undefined, 'tenant-admin')).status).toBe(204);
    await t.service.renewal.claimCaFile()!.idle();
    expect(readdirSync(claimCaDir)).toHaveLength(1);
    // A running broker may still hold the CA OpenSSL loaded before (until it restarts): certfleet decides.
    const g = await claimClient('globex-2');
    const answer = await ask(g, 'globex-2', signedRequest('req-g2-1', 'globex', await csrPem('dev-g2'), { cert: 'globex-2', key: 'globex-2' }));
    expect(answer.problem?.code).toBe('CLAIM_CA_UNKNOWN');
    await g.endAsync();
  });
});
