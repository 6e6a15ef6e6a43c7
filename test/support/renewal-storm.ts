/**
 * A renewal storm on real parts (issue 21.5), shared by test/renewal-storm.test.ts (small, proves
 * the mechanism) and bench/renewal-storm.bench.ts (full size): certfleet with its EST listener and
 * MQTT renewal, a real Mosquitto configured by `broker-config --mqtt-renewal`, and devices that
 * each hold a certificate and renew it with a CSR for a new key, over EST (Node TLS with the
 * device certificate) or MQTT (mqtt.js with it, a signed request), all at once. A device told
 * SERVICE_SATURATED (EST 503 + Retry-After, MQTT retry_after_seconds) waits as told and asks
 * again; any other 5xx, a lost answer or a wrong certificate is an error.
 */
import { createPrivateKey, randomUUID, sign, webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import mqtt, { type MqttClient } from 'mqtt';
import type { ManualClock } from '../../src/domain/clock.ts';
import { renewalSigningText } from '../../src/renewal/device-renewal.ts';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './broker-fixture.ts';
import type { TestDatabase } from './databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './mosquitto.ts';
import { tlsOptions } from './mqtt-clients.ts';
import { startTestService, type TestService } from './service.ts';
import { aclPluginPath } from './acl-plugin.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export interface StormStack {
  tmp: string;
  database: TestDatabase;
  broker: RunningMosquitto;
  t: TestService;
  mqttPort: number;
  estPort: number;
  combinedCa: string;
  /** Counted on the EST listener: connections dropped over EST_MAX_CONNECTIONS, TLS client errors by kind (handshake timeouts included). */
  serverEvents: { drops: number; tlsClientErrors: Map<string, number> };
  close(): Promise<void>;
}

export async function startStormStack(name: string, env: Record<string, string>): Promise<StormStack> {
  const fixture = await brokerTestFixture(name);
  const { tmp, database } = fixture;
  const file = (n: string) => join(tmp, n);
  const mqttPort = await freePort();
  let adminPort = await freePort();
  while (adminPort === mqttPort) adminPort = await freePort();
  const config = await brokerConfigHere(fixture.env, file('broker'), ['--port', String(mqttPort), '--admin-port', String(adminPort), '--mqtt-renewal', '--acl-plugin', aclPluginPath()]);
  const broker = await startMosquitto({ configDir: file('broker'), asWritten: true });
  // A storm can outlast the 5 minutes a signed MQTT request is valid around the server clock: certfleet runs on real time here.
  const clock: ManualClock = { now: () => new Date(), set: () => undefined, advance: () => undefined };
  const t = await startTestService(database, {
    clock,
    dataDir: file('data'),
    env: {
      ...fixture.env,
      ...config.env,
      EST_PORT: '0',
      EST_HOST: '127.0.0.1',
      EST_TLS_CERT_PATH: file('broker/server.crt'),
      EST_TLS_KEY_PATH: file('broker/server.key'),
      ...env,
    },
  });
  const started = await t.service.renewal.start(t.service.app.log);
  const estPort = Number(new URL(started.est!).port);
  // What the EST listener itself cut off: connections over its cap, TLS handshakes that failed or timed out.
  const serverEvents: StormStack['serverEvents'] = { drops: 0, tlsClientErrors: new Map() };
  const estServer = t.service.renewal.estServer()!.server as unknown as import('node:tls').Server;
  estServer.on('drop', () => serverEvents.drops++);
  estServer.on('tlsClientError', (e: Error) => {
    const kind = connectionErrorKind(e);
    serverEvents.tlsClientErrors.set(kind, (serverEvents.tlsClientErrors.get(kind) ?? 0) + 1);
  });
  return {
    tmp,
    database,
    broker,
    t,
    mqttPort,
    estPort,
    combinedCa: config.files.combinedCa,
    serverEvents,
    close: () => closeBrokerTest({ service: t, broker, database, tmp }),
  };
}

export interface StormDevice {
  tenant: string;
  deviceId: string;
  transport: 'est' | 'mqtt';
  certFile: string;
  keyFile: string;
  /** The CSR for the new key (PEM) and the new key's SubjectPublicKeyInfo (DER, base64). */
  csrPem: string;
  newSpki: string;
}

async function newCsr(): Promise<{ csrPem: string; spki: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=device', keys, signingAlgorithm: alg });
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey)).toString('base64');
  return { csrPem: csr.toString('pem'), spki };
}

/** Registers `counts[tenant]` devices per tenant with a first certificate; every `mqttEvery`-th renews over MQTT, the others over EST. */
export async function enrollFleet(stack: StormStack, counts: Record<string, number>, mqttEvery: number, parallel = 16): Promise<StormDevice[]> {
  const jobs: Array<{ tenant: string; i: number }> = [];
  for (const [tenant, n] of Object.entries(counts)) for (let i = 0; i < n; i++) jobs.push({ tenant, i });
  const devices: StormDevice[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const at = next++;
      const { tenant, i } = jobs[at];
      const deviceId = `dev-${i}`;
      const created = await stack.t.call(tenant, 'POST', '/customer/devices', { device_id: deviceId });
      if (created.status !== 201) throw new Error(`device ${tenant}/${deviceId}: ${created.status} ${created.body}`);
      const res = await stack.t.call(tenant, 'POST', `/customer/devices/${deviceId}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 });
      if (res.status !== 201) throw new Error(`certificate ${tenant}/${deviceId}: ${res.status} ${res.body}`);
      const certFile = join(stack.tmp, 'certs', `${tenant}-${deviceId}.crt`);
      const keyFile = join(stack.tmp, 'certs', `${tenant}-${deviceId}.key`);
      writeFileSync(certFile, res.json.cert_pem);
      writeFileSync(keyFile, res.json.private_key_pem, { mode: 0o644 });
      const { csrPem, spki } = await newCsr();
      devices[at] = { tenant, deviceId, transport: i % mqttEvery === mqttEvery - 1 ? 'mqtt' : 'est', certFile, keyFile, csrPem, newSpki: spki };
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return devices;
}

export interface DeviceOutcome {
  device: StormDevice;
  certPem: string | null;
  /** Answers SERVICE_SATURATED (503 / retry_after_seconds) before the certificate. */
  refused: number;
  retryAfterSeconds: number[];
  /** Anything but a certificate or SERVICE_SATURATED: other status codes or problems, a replay with another certificate, a transport that never worked. */
  errors: string[];
  /**
   * Connection-level failures the device retried (with exponential backoff and jitter, as a real
   * device does): the error code or message of each (ECONNRESET, ETIMEDOUT, a TLS handshake cut off...).
   */
  connectionErrors: string[];
  /** HTTP 5xx other than 503 SERVICE_SATURATED with Retry-After (must stay 0). */
  serverErrors: number;
  /** ms from the first request to the certificate. */
  latencyMs: number;
  /** Order in which devices got their certificate (0 first). */
  finishedAt: number;
  /** The answer to the repeated request (lost-answer simulation): the same certificate? */
  replayedSame: boolean | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A device's first pause after a failed connection, doubled after each further one (with ±50% jitter). */
const CONNECT_BACKOFF_MS = 1_000;
const CONNECT_BACKOFF_MAX_MS = 30_000;
/** An MQTT device asks again (a newly signed request, the same CSR) when no answer came in this long. */
const MQTT_ANSWER_TIMEOUT_MS = 120_000;
/** A device gives up a connection attempt (connect, TLS handshake and answer) after this long. */
const EST_ATTEMPT_TIMEOUT_MS = 120_000;

/** What kind of connection failure: the error code (ECONNRESET, ETIMEDOUT, EADDRNOTAVAIL, EMFILE...) or the message. */
export function connectionErrorKind(e: unknown): string {
  const error = e as NodeJS.ErrnoException;
  if (error.code) return `${error.code}${error.syscall ? ` (${error.syscall})` : ''}`;
  return (error.message ?? String(e)).replace(/\d+/g, 'N').slice(0, 120);
}

interface Answer {
  status: number;
  retryAfter: number | null;
  certPem: string | null;
  detail: string;
}

function estRenew(stack: StormStack, device: StormDevice, tls: { cert: Buffer; key: Buffer; ca: Buffer }): Promise<Answer> {
  const body = device.csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: stack.estPort,
        path: '/.well-known/est/simplereenroll',
        method: 'POST',
        agent: false,
        ...tls,
        headers: { 'content-type': 'application/pkcs10', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          const retry = res.headers['retry-after'];
          let certPem: string | null = null;
          if (res.statusCode === 200) {
            // base64 certs-only PKCS#7: the leaf is the only certificate.
            const p7 = Buffer.from(text.replace(/\s+/g, ''), 'base64');
            const cert = new x509.X509Certificates(p7)[0];
            certPem = cert ? cert.toString('pem') : null;
          }
          resolve({ status: res.statusCode ?? 0, retryAfter: retry === undefined ? null : Number(retry), certPem, detail: res.statusCode === 200 ? '' : text.slice(0, 300) });
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(EST_ATTEMPT_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'CLIENT_TIMEOUT' })));
    req.end(body);
  });
}

interface MqttSession {
  client: MqttClient;
  ask(): Promise<Answer>;
}

async function mqttSession(stack: StormStack, device: StormDevice, connectErrors: string[]): Promise<MqttSession> {
  const commonName = `${device.tenant}/${device.deviceId}`;
  let client: MqttClient | null = null;
  for (let backoffMs = CONNECT_BACKOFF_MS; client === null; backoffMs = Math.min(backoffMs * 2, CONNECT_BACKOFF_MAX_MS)) {
    try {
      client = await mqtt.connectAsync(`mqtts://localhost:${stack.mqttPort}`, {
        ...tlsOptions({ port: stack.mqttPort, cafile: stack.combinedCa, cert: device.certFile, key: device.keyFile }),
        protocolVersion: 5,
        reconnectPeriod: 0,
        connectTimeout: 120_000,
      });
    } catch (e) {
      connectErrors.push(connectionErrorKind(e));
      if (connectErrors.length > 10) throw e;
      await sleep(backoffMs / 2 + Math.random() * backoffMs);
    }
  }
  const waiting = new Map<string, (a: Answer) => void>();
  client.on('message', (_topic, payload) => {
    const m = JSON.parse(payload.toString()) as { request_id: string; cert_pem?: string; retry_after_seconds?: number; problem?: { status: number; code: string; detail: string } };
    waiting.get(m.request_id)?.({
      status: m.problem?.status ?? 200,
      retryAfter: m.retry_after_seconds ?? null,
      certPem: m.cert_pem ?? null,
      detail: m.problem ? `${m.problem.code}: ${m.problem.detail}` : '',
    });
  });
  await client.subscribeAsync(`certfleet/renew/${commonName}/response`, { qos: 1 });
  const key = createPrivateKey(readFileSync(device.keyFile));
  const certPem = readFileSync(device.certFile, 'utf8');
  return {
    client,
    ask() {
      // Every attempt is a newly signed request (a replayed signed message is refused by design).
      const requestId = randomUUID();
      const signedAt = Math.floor(Date.now() / 1000);
      const signature = sign('sha256', Buffer.from(renewalSigningText(requestId, signedAt, device.csrPem)), key).toString('base64');
      // No answer within the time a device waits (a request or answer lost on the way): it asks again.
      const answered = new Promise<Answer>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(requestId);
          reject(Object.assign(new Error('no MQTT answer in time'), { code: 'MQTT_NO_ANSWER' }));
        }, MQTT_ANSWER_TIMEOUT_MS);
        waiting.set(requestId, (a) => {
          clearTimeout(timer);
          waiting.delete(requestId);
          resolve(a);
        });
      });
      void client.publishAsync(
        `certfleet/renew/${commonName}/request`,
        JSON.stringify({ request_id: requestId, csr_pem: device.csrPem, cert_pem: certPem, signed_at: signedAt, signature }),
        { qos: 1 },
      );
      return answered;
    },
  };
}

const spkiOf = (pem: string) => Buffer.from(new x509.X509Certificate(pem).publicKey.rawData).toString('base64');

/**
 * Every device renews at a moment spread over `spreadMs` (0: all at once), obeying Retry-After,
 * at most `maxAttempts` times. Every `lostAnswerEvery`-th device (0: none) acts as if its
 * answer was lost and asks again with the same CSR: it must get the same certificate.
 */
export async function runStorm(
  stack: StormStack,
  devices: StormDevice[],
  options: { spreadMs?: number; maxAttempts?: number; lostAnswerEvery?: number; progress?: (p: {
      seconds: number;
      renewed: number;
      inFlight: number;
      peakInFlight: number;
      refusals: number;
      connectionErrors: number;
      connectionErrorKinds: Record<string, number>;
      serverErrors: number;
      listenerDrops: number;
      listenerTlsErrors: Record<string, number>;
    }) => void;
  } = {},
) {
  const maxAttempts = options.maxAttempts ?? 200;
  const ca = readFileSync(stack.combinedCa);
  // MQTT devices connect first (a device is online before it renews).
  const sessions = new Map<StormDevice, MqttSession>();
  /** MQTT connections that failed before the storm (retried with backoff). */
  const mqttConnectErrors: string[] = [];
  const mqttDevices = devices.filter((d) => d.transport === 'mqtt');
  for (let i = 0; i < mqttDevices.length; i += 64) {
    await Promise.all(mqttDevices.slice(i, i + 64).map(async (d) => sessions.set(d, await mqttSession(stack, d, mqttConnectErrors))));
  }
  let finished = 0;
  /** Requests in flight (sent, not answered yet) now and at most. */
  let active = 0;
  let peak = 0;
  const started = performance.now();
  let refusals = 0;
  let connectionErrors = 0;
  const connectionErrorKinds = new Map<string, number>();
  let serverErrors = 0;
  const progress = options.progress;
  const ticker = progress
    ? setInterval(
        () =>
          progress({
            seconds: (performance.now() - started) / 1000,
            renewed: finished,
            inFlight: active,
            peakInFlight: peak,
            refusals,
            connectionErrors,
            connectionErrorKinds: Object.fromEntries(connectionErrorKinds),
            serverErrors,
            listenerDrops: stack.serverEvents.drops,
            listenerTlsErrors: Object.fromEntries(stack.serverEvents.tlsClientErrors),
          }),
        30_000,
      )
    : null;
  const outcomes = await Promise.all(
    devices.map(async (device, index): Promise<DeviceOutcome> => {
      if (options.spreadMs) await sleep(Math.floor((index / devices.length) * options.spreadMs));
      const tls = device.transport === 'est' ? { cert: readFileSync(device.certFile), key: readFileSync(device.keyFile), ca } : null;
      const ask = () => (tls ? estRenew(stack, device, tls) : sessions.get(device)!.ask());
      const outcome: DeviceOutcome = {
        device,
        certPem: null,
        refused: 0,
        retryAfterSeconds: [],
        errors: [],
        connectionErrors: [],
        serverErrors: 0,
        latencyMs: 0,
        finishedAt: -1,
        replayedSame: null,
      };
      const begin = performance.now();
      let backoffMs = CONNECT_BACKOFF_MS;
      for (let attempt = 0; attempt < maxAttempts && !outcome.certPem; attempt++) {
        let answer: Answer;
        try {
          active++;
          peak = Math.max(peak, active);
          answer = await ask();
        } catch (e) {
          // A real device retries a failed connection after a growing, jittered pause.
          const kind = connectionErrorKind(e);
          outcome.connectionErrors.push(kind);
          connectionErrors++;
          connectionErrorKinds.set(kind, (connectionErrorKinds.get(kind) ?? 0) + 1);
          await sleep(backoffMs / 2 + Math.random() * backoffMs);
          backoffMs = Math.min(backoffMs * 2, CONNECT_BACKOFF_MAX_MS);
          continue;
        } finally {
          active--;
        }
        backoffMs = CONNECT_BACKOFF_MS;
        if (answer.status >= 500 && !(answer.status === 503 && answer.retryAfter !== null)) {
          outcome.serverErrors++;
          serverErrors++;
        }
        if (answer.status === 200 && answer.certPem) {
          outcome.certPem = answer.certPem;
        } else if (answer.status === 503 && answer.retryAfter !== null && answer.retryAfter >= 1) {
          outcome.refused++;
          refusals++;
          outcome.retryAfterSeconds.push(answer.retryAfter);
          await sleep(answer.retryAfter * 1000);
        } else {
          outcome.errors.push(`${answer.status}: ${answer.detail}`);
          break;
        }
      }
      outcome.latencyMs = performance.now() - begin;
      if (outcome.certPem) {
        outcome.finishedAt = finished++;
        if (spkiOf(outcome.certPem) !== device.newSpki) outcome.errors.push('the certificate is not for the CSR key');
        if (options.lostAnswerEvery && index % options.lostAnswerEvery === 0) {
          // The answer was "lost": ask again, obeying Retry-After, until an answer comes.
          for (let attempt = 0; attempt < maxAttempts; attempt++) {
            const again = await ask().catch((e: unknown) => ({ status: 0, retryAfter: null, certPem: null, detail: (e as Error).message }) as Answer);
            if (again.status === 503 && again.retryAfter) {
              await sleep(again.retryAfter * 1000);
              continue;
            }
            outcome.replayedSame = again.status === 200 && again.certPem === outcome.certPem;
            if (!outcome.replayedSame) outcome.errors.push(`repeated request: ${again.status} ${again.detail}`);
            break;
          }
        }
      } else if (outcome.errors.length === 0) outcome.errors.push(`no certificate after ${maxAttempts} attempts (${outcome.connectionErrors.length} connection errors)`);
      return outcome;
    }),
  );
  const elapsedMs = performance.now() - started;
  if (ticker) clearInterval(ticker);
  await Promise.all([...sessions.values()].map((s) => s.client.endAsync(true)));
  return { outcomes, elapsedMs, peakInFlight: peak, mqttConnectErrors };
}

/** Certificates per device in the database (tenant/device → count), and rotations started per device. */
export async function issuedPerDevice(stack: StormStack): Promise<Map<string, { certificates: number; rotations: number }>> {
  const { rows } = await stack.database.db.asOperator((tx) =>
    tx.query<{ key: string; certificates: string; rotations: string }>(
      `SELECT c.tenant_id || '/' || c.device_id AS key, count(*) AS certificates,
              (SELECT count(*) FROM certificate_rotations r WHERE r.tenant_id = c.tenant_id AND r.device_id = c.device_id) AS rotations
         FROM device_certificates c GROUP BY c.tenant_id, c.device_id`,
    ),
  );
  return new Map(rows.map((r) => [r.key, { certificates: Number(r.certificates), rotations: Number(r.rotations) }]));
}
