/**
 * The adversarial identity matrix of the broker ACL, against a real Mosquitto 2.0 and real clients
 * (mqtt.js over mutual TLS), in either mode certfleet configures: the acl_file writeBrokerConfig
 * renders (default deny, MQTT renewal on), or the certfleet_acl plugin (broker-plugin/).
 *
 * The fleet holds adversarial identities next to the victims: reserved words, ids equal to topic
 * levels (tenant, device, renew, request, response), ids with `. : -`, the longest CN, ids that
 * are prefixes of a victim's; and certificates with CNs certfleet refuses at registration (`+`,
 * `#`, `$`, one level, three levels), which the broker only knows as unknown users.
 *
 * Every identity subscribes to every wildcard it might abuse and publishes to every victim topic
 * (another device's application and renewal topics, certfleet's own topics, $CONTROL); then the
 * legitimate source (certfleet's admin, given publish on every topic for the test only) publishes
 * on those topics, and a QoS 1 fence per attacker orders the deliveries.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { writeBrokerConfig } from '../../src/broker/write-broker-config.ts';
import type { AclDevice, BrokerGrant } from '../../src/domain/broker-acl.ts';
import { aclPluginPath } from './acl-plugin.ts';
import { type RunningMosquitto, startMosquitto } from './mosquitto.ts';
import { tlsOptions } from './mqtt-clients.ts';

const exec = promisify(execFile);
const openssl = (args: string[], cwd: string) => exec('openssl', args, { cwd });

export const LONG_TENANT = `T${'x'.repeat(30)}`; // 31 characters
export const LONG_DEVICE = `D${'-.:'.repeat(10)}z`; // 32: CN of 64 characters, the RFC 5280 maximum

/** The victims: their application and renewal topics are what the attackers go after. */
export const VICTIMS: AclDevice[] = [
  { tenantId: 'TA', deviceId: 'VICTIM' },
  { tenantId: 'TA', deviceId: 'other' },
  { tenantId: 'TB', deviceId: 'dev-b' },
];
/** Registered identities (in the acl_file): ids certfleet accepts, or accepted before the reserved list. */
export const REGISTERED_ATTACKERS: AclDevice[] = [
  { tenantId: 'TB', deviceId: 'spy' },
  { tenantId: 'certfleet', deviceId: 'renew' },
  { tenantId: 'certfleet', deviceId: 'provision' },
  { tenantId: 'tenant', deviceId: 'device' },
  { tenantId: 'tenant', deviceId: 'TA' },
  { tenantId: 'TA', deviceId: 'device' },
  { tenantId: 'device', deviceId: 'VICTIM' },
  { tenantId: 'renew', deviceId: 'request' },
  { tenantId: 'request', deviceId: 'response' },
  { tenantId: 'TA', deviceId: 'VICTI' },
  { tenantId: 'TA', deviceId: 'VICTIM.' },
  { tenantId: 'TA', deviceId: 'VICTIM:x' },
  { tenantId: 'a.b:c-d', deviceId: 'x.y:z-w' },
  { tenantId: LONG_TENANT, deviceId: LONG_DEVICE },
];
/** CNs certfleet never registers (refused ids): unknown users to the broker. */
export const UNREGISTERED_CNS = ['+/#', 'TA/+', '#', 'TA/#', '$SYS/x', 'certfleet/+', 'TA', 'TA/VICTIM/request', 'TA/VICTIM/response', 'tenant/TA/device/VICTIM', 'TA//VICTIM'];
export const GRANTS = new Map<string, BrokerGrant[]>([['TA', [{ filter: 'broadcast/#', access: 'read' }]]]);

export const cn = (d: AclDevice) => `${d.tenantId}/${d.deviceId}`;
export const own = (d: AclDevice) => `tenant/${d.tenantId}/device/${d.deviceId}/inbox`;
/** Topics no attacker may read or write. */
export const VICTIM_TOPICS = [
  ...VICTIMS.flatMap((v) => [
    `tenant/${v.tenantId}/device/${v.deviceId}/telemetry`,
    `tenant/${v.tenantId}/device/${v.deviceId}/cmd`,
    `certfleet/renew/${cn(v)}/request`,
    `certfleet/renew/${cn(v)}/response`,
    `certfleet/renew/${cn(v)}/advice`,
  ]),
  'certfleet/provision/TA/VICTIM/request',
  'certfleet/renew',
  'tenant/TB/broadcast/news',
];
export const BROADCAST_A = 'tenant/TA/broadcast/news';
export const WILDCARDS = [
  '#',
  '+/#',
  'tenant/#',
  'tenant/TA/#',
  'tenant/+/device/+/#',
  'certfleet/#',
  'certfleet/renew/+/+/+',
  'certfleet/renew/TA/VICTIM/response',
  '$CONTROL/#',
  '$SYS/#',
  '$share/g/tenant/TA/device/VICTIM/#',
  BROADCAST_A,
];

export interface Attacker {
  commonName: string;
  registered: AclDevice | null;
  client: MqttClient | null;
  /** Connection refused (e.g. a CN openssl or the broker will not take). */
  connectError?: string;
  received: Array<{ topic: string; payload: string }>;
  published: Array<{ topic: string; accepted: boolean }>;
  /** qos 0..2 granted, >= 128 refused. */
  subscribed: Array<{ topic: string; qos: number }>;
}

export interface MatrixRun {
  mode: 'acl_file' | 'plugin';
  tmp: string;
  caDir: string;
  broker: RunningMosquitto;
  cafile: string;
  /** The acl_file (acl_file mode) or the grants file (plugin mode) as certfleet wrote it. */
  writtenText: string;
  configText: string;
  observer: MqttClient;
  observed: string[];
  attackers: Attacker[];
  adminPassword: string;
  /** A new device certificate (same Device CA). */
  issue(name: string, commonName: string): Promise<{ cert: string; key: string }>;
  connectDevice(files: { cert: string; key: string }): Promise<MqttClient>;
  close(): Promise<void>;
}

/**
 * SUBSCRIBE: the reason code per filter, in order (0..2 granted QoS, >= 0x80 refused). mqtt.js
 * rejects a SUBACK holding any refusal; the packet is on the error.
 */
export async function subscribeCodes(client: MqttClient, topics: string[], qos: 0 | 1 = 0): Promise<Array<{ topic: string; qos: number }>> {
  let granted: number[];
  try {
    granted = ((await client.subscribeAsync(topics, { qos })) as unknown as Array<{ qos: number }>).map((g) => g.qos);
  } catch (error) {
    const packet = (error as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw error;
    granted = packet.granted;
  }
  if (granted.length !== topics.length) throw new Error(`SUBACK: ${granted.length} codes for ${topics.length} filters`);
  return topics.map((topic, i) => ({ topic, qos: granted[i] }));
}

/** PUBACK: true when accepted, false when the broker answered "not authorized" (MQTT 5 reason 135). */
export async function publishQos1(client: MqttClient, topic: string, payload: string): Promise<boolean> {
  try {
    await client.publishAsync(topic, payload, { qos: 1 });
    return true;
  } catch (error) {
    if (/not authori[sz]ed|135/i.test((error as Error).message)) return false;
    throw error;
  }
}

export async function waitFor(predicate: () => boolean, what: string, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * One $CONTROL/dynamic-security/v1 command, sent by a fresh admin connection: its answer, or
 * `{ kicked: true }` when the plugin disconnected that connection first (Mosquitto 2.0.11's dynamic
 * security plugin disconnects every client of a role it changes, before it answers).
 */
export async function dynsecCommand(adminPort: number, password: string, command: Record<string, unknown>): Promise<Record<string, unknown>> {
  const admin = await mqtt.connectAsync(`mqtt://127.0.0.1:${adminPort}`, { username: 'certfleet-admin', password, protocolVersion: 5, reconnectPeriod: 0 });
  try {
    const response = '$CONTROL/dynamic-security/v1/response';
    await admin.subscribeAsync(response, { qos: 1 });
    const answer = new Promise<Record<string, unknown>>((resolve) => {
      admin.on('message', (topic, payload) => {
        if (topic === response) resolve((JSON.parse(payload.toString()) as { responses: Record<string, unknown>[] }).responses[0]);
      });
      admin.on('close', () => resolve({ kicked: true }));
    });
    admin.publish('$CONTROL/dynamic-security/v1', JSON.stringify({ commands: [command] }), { qos: 1 });
    return await answer;
  } finally {
    await admin.endAsync(true).catch(() => undefined);
  }
}

export async function runMatrix(mode: 'acl_file' | 'plugin'): Promise<MatrixRun> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), `certfleet-broker-acl-${mode}-`));
  await chmod(tmp, 0o755); // the broker runs as user mosquitto when started as root
  const caDir = path.join(tmp, 'ca');
  await mkdir(caDir, { recursive: true });
  await writeFile(path.join(caDir, 'leaf.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await writeFile(path.join(caDir, 'index.txt'), '');
  await writeFile(path.join(caDir, 'crlnumber'), '1000\n');
  await writeFile(path.join(caDir, 'ca.cnf'), `[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ncertificate = ca.crt\nprivate_key = ca.key\ndefault_md = sha256\ndefault_crl_days = 2\n`);
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=certfleet ACL matrix Device CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], caDir);
  await mkdir(path.join(tmp, 'crl'), { mode: 0o755 });
  const crlPath = path.join(tmp, 'crl', 'device-crl.pem');
  await openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', crlPath], caDir);
  await chmod(crlPath, 0o644);

  const adminPassword = 'acl-matrix-admin';
  const outDir = path.join(tmp, 'broker');
  const config = await writeBrokerConfig({
    outDir,
    deviceCaCertPem: await readFile(path.join(caDir, 'ca.crt'), 'utf8'),
    crlPath,
    dynamicSecurity: { adminPassword, renewalTopics: true },
    acl: { devices: [...VICTIMS, ...REGISTERED_ATTACKERS], grants: GRANTS },
    aclPlugin: mode === 'plugin' ? { pluginPath: aclPluginPath() } : undefined,
  });
  const cafile = config.files.combinedCa;
  const writtenFile = (mode === 'plugin' ? config.files.grantsFile : config.files.aclFile) as string;
  const writtenText = await readFile(writtenFile, 'utf8');
  if (mode === 'acl_file') {
    // The test's observer and source is certfleet's admin, given read/write on every non-$ topic
    // for this test only (certfleet's own admin lines are kept; the device lines are untouched).
    await writeFile(writtenFile, writtenText.replace('topic read tenant/#\n', 'topic read tenant/#\ntopic readwrite #\n'));
  }
  const broker = await startMosquitto({ configDir: outDir });
  const configText = await readFile(broker.configFile, 'utf8');

  const issue = async (name: string, commonName: string) => {
    const key = path.join(caDir, `${name}.key`);
    const cert = path.join(caDir, `${name}.crt`);
    const csr = path.join(caDir, `${name}.csr`);
    const subject = `/CN=${commonName.replace(/([/+])/g, '\\$1')}`; // openssl -subj: / and + are separators
    await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', subject], caDir);
    await openssl(['x509', '-req', '-in', csr, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'leaf.ext', '-out', cert], caDir);
    return { cert, key };
  };
  const connectDevice = (files: { cert: string; key: string }) =>
    mqtt.connectAsync(`mqtts://localhost:${broker.port}`, {
      ...tlsOptions({ port: broker.port, cafile, ...files }),
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 20_000,
    });

  const observed: string[] = [];
  if (mode === 'plugin') {
    // Plugin mode: the admin's topics beyond its acl_file ones are the dynamic security plugin's
    // to decide; for this test only its role may publish everywhere (the device decisions are the
    // plugin's alone, whatever the dynamic security plugin would allow).
    const answer = await dynsecCommand(broker.adminPort as number, adminPassword, { command: 'addRoleACL', rolename: 'admin', acltype: 'publishClientSend', topic: '#', allow: true });
    if (answer.error) throw new Error(`dynsec addRoleACL: ${JSON.stringify(answer.error)}`);
  }
  const observer = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.adminPort}`, { username: 'certfleet-admin', password: adminPassword, protocolVersion: 5, reconnectPeriod: 0 });
  observer.on('message', (_topic, payload) => observed.push(payload.toString()));
  await observer.subscribeAsync('#', { qos: 1 });

  const attackers: Attacker[] = [];
  const identities = [...REGISTERED_ATTACKERS.map((d) => ({ commonName: cn(d), registered: d as AclDevice | null })), ...UNREGISTERED_CNS.map((c) => ({ commonName: c, registered: null }))];
  for (const [i, identity] of identities.entries()) {
    const attacker: Attacker = { ...identity, client: null, received: [], published: [], subscribed: [] };
    attackers.push(attacker);
    try {
      attacker.client = await connectDevice(await issue(`attacker-${i}`, identity.commonName));
    } catch (error) {
      attacker.connectError = (error as Error).message;
      continue;
    }
    attacker.client.on('message', (topic, payload) => attacker.received.push({ topic, payload: payload.toString() }));
    // QoS 0 subscriptions: deliveries are not held back by the in-flight window, so the PUBACK fence below orders them.
    attacker.subscribed = await subscribeCodes(attacker.client, [...WILDCARDS, ...(identity.registered ? [own(identity.registered)] : [])]);
  }

  // 1. Every attacker publishes to every victim topic (and $CONTROL, and tenant A's read-only broadcast).
  for (const attacker of attackers) {
    if (!attacker.client) continue;
    for (const topic of [...VICTIM_TOPICS, BROADCAST_A, '$CONTROL/dynamic-security/v1']) {
      attacker.published.push({ topic, accepted: await publishQos1(attacker.client, topic, `attack|${attacker.commonName}|${topic}`) });
    }
  }
  // 2. The legitimate source publishes on every victim topic, the broadcast, and each registered attacker's own topic.
  const sourceTopics = [...VICTIM_TOPICS, BROADCAST_A, ...REGISTERED_ATTACKERS.map(own)];
  for (const topic of sourceTopics) await observer.publishAsync(topic, `source|${topic}`, { qos: 1 });
  await waitFor(() => sourceTopics.every((t) => observed.includes(`source|${t}`)), 'the observer to see every source message');
  // 3. Fence: a QoS 1 round trip per attacker; the broker wrote every earlier delivery to that connection before the PUBACK.
  for (const attacker of attackers) if (attacker.client) await publishQos1(attacker.client, 'fence', 'fence');

  return {
    mode,
    tmp,
    caDir,
    broker,
    cafile,
    writtenText,
    configText,
    observer,
    observed,
    attackers,
    adminPassword,
    issue,
    connectDevice,
    async close() {
      for (const a of attackers) await a.client?.endAsync(true).catch(() => undefined);
      await observer.endAsync(true).catch(() => undefined);
      await broker.stop();
      await rm(tmp, { recursive: true, force: true });
    },
  };
}
