/**
 * The CA rollover harness (test/ca-rollover.test.ts, bench/rollover.bench.ts): a fleet of devices
 * that reconnect to a real Mosquitto without pause (TLS handshake + MQTT 3.1.1 CONNECT, one
 * CONNACK awaited, then closed), the outcome of every attempt counted per phase; devices that
 * renew over EST (RFC 7030 simplereenroll with a key made on the device, then a use of the new
 * certificate that confirms the rotation); and a wait on the broker's own files (cafile, crlfile
 * named by mosquitto.conf) plus a reload logged after they last changed.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, webcrypto } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import https from 'node:https';
import path, { join } from 'node:path';
import tls from 'node:tls';
import { brokerTestFixture, closeBrokerTest, brokerConfigHere } from './broker-fixture.ts';
import type { TestDatabase } from './databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './mosquitto.ts';
import { startTestService, type TestService } from './service.ts';
import { crlIssuerHash } from '../../src/pki/subject-hash.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** 'accepted', 'revoked' (TLS alert 44), 'unknown_ca' (alert 48), or another error's message. */
export type Outcome = string;

/** One certificate a device holds (and the key that never left it). */
export interface Credential {
  /** certfleet's certificate id (null when not looked up). */
  id: number | null;
  certPem: string;
  keyPem: string;
  serial: string;
  /** Issuer DN, for the reports. */
  issuer: string;
}

export interface FleetDevice {
  id: string;
  current: Credential;
  /** Attempts in flight per credential (a credential is retired only once its attempts are over). */
  inflight: Map<Credential, number>;
}

/** A certificate that must be refused: `pending` until its revocation first reached the broker. */
export interface RefusalProbe {
  name: string;
  cred: Credential;
  state: 'pending' | 'refused';
  /** When (performance.now()) the first refused handshake ended: an acceptance counts against the broker only if its handshake began after. */
  refusedAt?: number;
}

export interface PhaseCounts {
  validAttempts: number;
  validAccepted: number;
  validRefused: number;
  probeAttempts: number;
  probeRefused: number;
  /** Accepted after the probe had been refused once (a failure). */
  probeAccepted: number;
  /** Accepted while the revocation was still on its way (not a failure). */
  probePendingAccepted: number;
  /** Devices with at least one accepted attempt in this phase. */
  devicesAccepted: Set<string>;
  refusalReasons: Record<string, number>;
}

export interface Failure {
  phase: string;
  device: string;
  serial: string;
  issuer: string;
  outcome: Outcome;
  at: string;
}

export const serialOf = (cert: x509.X509Certificate) => cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, '');

export function credentialFrom(certPem: string, keyPem: string, id: number | null = null): Credential {
  const cert = new x509.X509Certificate(certPem);
  return { id, certPem, keyPem, serial: serialOf(cert), issuer: cert.issuer };
}

/** MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, no credentials (the broker takes the CN). */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  const remaining = variable.length + payload.length; // < 128 for our client ids
  return Buffer.concat([Buffer.from([0x10, remaining]), variable, payload]);
}

export function classify(message: string): Outcome {
  if (/certificate revoked/i.test(message)) return 'revoked';
  if (/unknown ca/i.test(message)) return 'unknown_ca';
  return message;
}

let attemptCounter = 0;

/**
 * One TLS client context per credential and CA bundle, made at its first attempt: the handshake
 * loop connects thousands of times with a few dozen credentials, and a context of its own for each
 * attempt (parsing the key, the certificate and the CA bundle again) was about a fifth of a
 * rollover test's CPU. A context holds no session: Node resumes a client session only when one is
 * passed (`session`), and `connectOnce` refuses a resumed one, so every attempt stays a full
 * handshake in which the broker checks the certificate against its current CA and CRL files.
 */
const contexts = new WeakMap<Credential, Map<string | Buffer, tls.SecureContext>>();
function clientContext(caPem: string | Buffer, cred: Credential): tls.SecureContext {
  let byCa = contexts.get(cred);
  if (!byCa) contexts.set(cred, (byCa = new Map()));
  let context = byCa.get(caPem);
  if (!context) byCa.set(caPem, (context = tls.createSecureContext({ ca: caPem, cert: cred.certPem, key: cred.keyPem })));
  return context;
}

/** One TLS handshake and MQTT CONNECT with `cred`; 'accepted' on CONNACK 0. */
export function connectOnce(target: { port: number; caPem: string | Buffer; host?: string; timeoutMs?: number }, cred: Credential): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const socket = tls.connect({
      host: '127.0.0.1',
      servername: target.host ?? 'localhost',
      port: target.port,
      secureContext: clientContext(target.caPem, cred),
      rejectUnauthorized: true,
    });
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish(`no CONNACK within ${target.timeoutMs ?? 30_000} ms`), target.timeoutMs ?? 30_000);
    socket.once('secureConnect', () => {
      // A resumed session skips the broker's certificate check: it would say nothing about the CRL.
      if (socket.isSessionReused()) return finish('TLS session resumed: no certificate check');
      socket.write(connectPacket(`rollover-${process.pid}-${++attemptCounter}`));
    });
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 4) return;
      if (received[0] !== 0x20) return finish(`unexpected MQTT packet 0x${received[0].toString(16)}`);
      finish(received[3] === 0 ? 'accepted' : `CONNACK return code ${received[3]}`);
    });
    socket.on('error', (error) => finish(classify(error.message)));
    socket.on('close', () => finish('closed before CONNACK'));
  });
}

const emptyCounts = (): PhaseCounts => ({
  validAttempts: 0,
  validAccepted: 0,
  validRefused: 0,
  probeAttempts: 0,
  probeRefused: 0,
  probeAccepted: 0,
  probePendingAccepted: 0,
  devicesAccepted: new Set(),
  refusalReasons: {},
});

export interface HandshakeLoop {
  phase: string;
  readonly counts: Map<string, PhaseCounts>;
  readonly failures: Failure[];
  /** Probe failures: a refused certificate accepted again. */
  readonly probeFailures: Failure[];
  probes: RefusalProbe[];
  countsOf(phase: string): PhaseCounts;
  /** Resolves once every device had an accepted attempt in the current phase, begun after this call. */
  fleetSeenAfter(timeoutMs: number): Promise<void>;
  /** Resolves once `probe` was refused by the broker (its state turns `refused`). */
  probeRefused(probe: RefusalProbe, timeoutMs: number): Promise<void>;
  /** Switches the device to `next` and resolves once no attempt with the previous credential is in flight. */
  switchTo(device: FleetDevice, next: Credential): Promise<Credential>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `concurrency` workers, each cycling through the devices (and, every `probeEvery`-th attempt,
 * through the probes) with no pause between attempts. Every attempt is counted in the phase it
 * began in; a refusal of a device's current credential is a failure.
 */
export function startHandshakeLoop(options: { port: number; caPem: string | Buffer; devices: FleetDevice[]; concurrency?: number; probeEvery?: number; timeoutMs?: number; initialPhase: string }): HandshakeLoop {
  const counts = new Map<string, PhaseCounts>();
  const failures: Failure[] = [];
  const probeFailures: Failure[] = [];
  let stopped = false;
  let next = 0;
  let nextProbe = 0;
  let attempts = 0;
  const attemptStarts = new Map<string, number>(); // device → attempt number of its last accepted attempt's start
  const loop: HandshakeLoop = {
    phase: options.initialPhase,
    counts,
    failures,
    probeFailures,
    probes: [],
    countsOf(phase) {
      let c = counts.get(phase);
      if (!c) counts.set(phase, (c = emptyCounts()));
      return c;
    },
    async fleetSeenAfter(timeoutMs) {
      const from = attempts;
      const seen = new Set<string>();
      const check = () => {
        for (const d of options.devices) if ((attemptStarts.get(d.id) ?? -1) >= from) seen.add(d.id);
        return seen.size === options.devices.length;
      };
      const until = Date.now() + timeoutMs;
      while (!check()) {
        if (stopped) throw new Error('the handshake loop stopped');
        if (Date.now() > until) {
          const missing = options.devices.filter((d) => !seen.has(d.id)).map((d) => d.id);
          throw new Error(`not every device was accepted again in phase ${loop.phase} within ${timeoutMs} ms: missing ${missing.join(', ')}; failures so far ${JSON.stringify(failures.slice(0, 5))}`);
        }
        await sleep(25);
      }
    },
    async probeRefused(probe, timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (probe.state !== 'refused') {
        if (Date.now() > until) throw new Error(`${probe.name} (serial ${probe.cred.serial}) was not refused within ${timeoutMs} ms`);
        await sleep(25);
      }
    },
    async switchTo(device, nextCred) {
      const previous = device.current;
      device.current = nextCred;
      while ((device.inflight.get(previous) ?? 0) > 0) await sleep(5);
      device.inflight.delete(previous);
      return previous;
    },
    async stop() {
      stopped = true;
      await Promise.all(workers);
    },
  };
  const target = { port: options.port, caPem: options.caPem, timeoutMs: options.timeoutMs };
  const probeEvery = options.probeEvery ?? 5;

  async function probeAttempt() {
    const probe = loop.probes[nextProbe++ % loop.probes.length];
    const phase = loop.phase;
    // A handshake that began before the broker's reload may end accepted after another worker's
    // handshake, begun later, was refused: that one says nothing about the reloaded broker.
    const startedAt = performance.now();
    const outcome = await connectOnce(target, probe.cred);
    const c = loop.countsOf(phase);
    c.probeAttempts++;
    if (outcome === 'accepted') {
      if (probe.refusedAt !== undefined && startedAt > probe.refusedAt) {
        c.probeAccepted++;
        probeFailures.push({ phase, device: probe.name, serial: probe.cred.serial, issuer: probe.cred.issuer, outcome, at: new Date().toISOString() });
      } else c.probePendingAccepted++;
    } else {
      c.probeRefused++;
      probe.state = 'refused';
      probe.refusedAt ??= performance.now();
    }
  }

  async function deviceAttempt() {
    const device = options.devices[next++ % options.devices.length];
    const cred = device.current;
    const phase = loop.phase;
    const n = attempts++;
    device.inflight.set(cred, (device.inflight.get(cred) ?? 0) + 1);
    let outcome: Outcome;
    try {
      outcome = await connectOnce(target, cred);
    } finally {
      device.inflight.set(cred, (device.inflight.get(cred) ?? 1) - 1);
    }
    const c = loop.countsOf(phase);
    c.validAttempts++;
    if (outcome === 'accepted') {
      c.validAccepted++;
      c.devicesAccepted.add(device.id);
      attemptStarts.set(device.id, Math.max(attemptStarts.get(device.id) ?? -1, n));
    } else {
      c.validRefused++;
      c.refusalReasons[outcome] = (c.refusalReasons[outcome] ?? 0) + 1;
      failures.push({ phase, device: device.id, serial: cred.serial, issuer: cred.issuer, outcome, at: new Date().toISOString() });
    }
  }

  async function worker() {
    let i = 0;
    while (!stopped) {
      if (loop.probes.length > 0 && ++i % probeEvery === 0) await probeAttempt();
      else await deviceAttempt();
    }
  }
  const workers = Array.from({ length: options.concurrency ?? 4 }, () => worker());
  return loop;
}

/** An HTTPS request to the EST listener as a device (client certificate `cred`). */
export function estRequest(
  estUrl: string,
  caPem: string | Buffer,
  cred: Credential | null,
  method: 'GET' | 'POST',
  path: string,
  body?: Buffer | string,
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const url = new URL(`${estUrl}/${path}`);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        servername: 'localhost',
        port: url.port,
        path: url.pathname,
        method,
        ca: caPem,
        ...(cred ? { cert: cred.certPem, key: cred.keyPem } : {}),
        headers: body !== undefined ? { 'content-type': 'application/pkcs10', 'content-length': Buffer.byteLength(body) } : {},
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A new EC P-256 key made "on the device" and its CSR (base64 DER, as RFC 7030 sends it). */
export async function deviceCsr(commonName: string): Promise<{ keyPem: string; csrBase64: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${commonName.replace(/[,+="\\<>;]/g, '\\$&')}`, keys, signingAlgorithm: EC });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END PRIVATE KEY-----\n`;
  return { keyPem, csrBase64: Buffer.from(csr.rawData).toString('base64') };
}

/** The certificate of an EST certs-only answer (base64 PKCS#7). */
export function certFromEst(body: string): x509.X509Certificate {
  const certs = new x509.X509Certificates(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
  if (certs.length !== 1) throw new Error(`the EST answer holds ${certs.length} certificates`);
  return certs[0];
}

/** simplereenroll with the device's current credential and a new key; the new credential. */
export async function estReenroll(estUrl: string, caPem: string | Buffer, device: FleetDevice): Promise<Credential> {
  const { keyPem, csrBase64 } = await deviceCsr(device.id);
  const res = await estRequest(estUrl, caPem, device.current, 'POST', 'simplereenroll', csrBase64);
  if (res.status !== 200) throw new Error(`EST simplereenroll of ${device.id} answered ${res.status}: ${res.body.slice(0, 500)}`);
  const cert = certFromEst(res.body);
  return credentialFrom(cert.toString('pem'), keyPem);
}

/** The CA certificates in a PEM bundle. */
export const certificatesIn = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new x509.X509Certificate(p));
/** The CRLs in a PEM file. */
export const crlsIn = (pem: string) => (pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? []).map((p) => new x509.X509Crl(p));

/**
 * The broker's cafile and the CRL file it enforces, as mosquitto.conf names them: its `crlfile`, or
 * in the CRL hash folder layout (`capath <CRL file>.hash` and a placeholder `crlfile`) the CRL file
 * the folder's links point to, with `capath` set.
 */
export function brokerTrustFiles(configFile: string): { cafile: string; crlfile: string; capath?: string } {
  const conf = readFileSync(configFile, 'utf8');
  const cafile = conf.match(/^cafile (.+)$/m)?.[1];
  const crlfile = conf.match(/^crlfile (.+)$/m)?.[1];
  const capath = conf.match(/^capath (.+)\.hash$/m)?.[1];
  if (!cafile || !crlfile) throw new Error(`${configFile} names no cafile or crlfile`);
  if (capath) return { cafile: cafile.trim(), crlfile: capath.trim(), capath: `${capath.trim()}.hash` };
  return { cafile: cafile.trim(), crlfile: crlfile.trim() };
}

export interface BrokerTrust {
  cas: x509.X509Certificate[];
  crls: x509.X509Crl[];
}

/** What the broker enforces: the cafile's CAs, and the CRLs of the CRL file (capath: only those whose issuer hash has its `.r0` link to that file). */
export function readBrokerTrust(files: { cafile: string; crlfile: string; capath?: string }): BrokerTrust & { signature: string } {
  const ca = readFileSync(files.cafile, 'utf8');
  const crl = readFileSync(files.crlfile, 'utf8');
  let crls = crlsIn(crl);
  let links = '';
  if (files.capath) {
    const linked = new Set(
      (existsSync(files.capath) ? readdirSync(files.capath) : [])
        .filter((n) => /^[0-9a-f]{8}\.r\d+$/.test(n) && path.resolve(files.capath!, readlinkSync(path.join(files.capath!, n))) === path.resolve(files.crlfile))
        .map((n) => n.slice(0, 8)),
    );
    links = [...linked].sort().join(',');
    crls = crls.filter((c) => linked.has(crlIssuerHash(new Uint8Array(c.rawData))));
  }
  return { cas: certificatesIn(ca), crls, signature: createHash('sha256').update(ca).update('\0').update(crl).update('\0').update(links).digest('hex') };
}

/** Whether `ca` is in the bundle (same certificate) and a CRL it signed is in the CRL file. */
export async function brokerCovers(trust: BrokerTrust, ca: x509.X509Certificate): Promise<{ inCafile: boolean; crl: boolean }> {
  const inCafile = trust.cas.some((c) => Buffer.from(c.rawData).equals(Buffer.from(ca.rawData)));
  let crl = false;
  for (const c of trust.crls) {
    if (c.issuer !== ca.subject) continue;
    if (await c.verify({ publicKey: ca.publicKey }).catch(() => false)) crl = true;
  }
  return { inCafile, crl };
}

/**
 * Waits until the broker's files satisfy `ready` and Mosquitto logged a reload after they last
 * changed. `since`: the broker log's length before the change was asked for. A change is noticed
 * between two polls; the reload that follows it is logged after the earlier poll's log length.
 */
export async function waitForBrokerTrust(
  broker: RunningMosquitto,
  files: { cafile: string; crlfile: string; capath?: string },
  since: number,
  ready: (trust: BrokerTrust) => Promise<boolean> | boolean,
  what: string,
  timeoutMs: number,
): Promise<BrokerTrust> {
  const until = Date.now() + timeoutMs;
  let lastSignature: string | null = null;
  let changedAfter = since;
  let previousLogLength = since;
  for (;;) {
    const logLength = broker.logs().length;
    const trust = readBrokerTrust(files);
    if (lastSignature !== null && trust.signature !== lastSignature) changedAfter = previousLogLength;
    lastSignature = trust.signature;
    const reloaded = /Reloading config/.test(broker.logs().slice(changedAfter));
    if (reloaded && (await ready(trust))) return trust;
    if (Date.now() > until) {
      throw new Error(
        `timed out waiting for ${what}: reload logged since the last change ${reloaded}; cafile holds ${trust.cas.map((c) => c.subject).join(' | ')}; ` +
          `crlfile holds CRLs of ${trust.crls.map((c) => c.issuer).join(' | ')}`,
      );
    }
    previousLogLength = logLength;
    await sleep(25);
  }
}

/** A printable summary of the per-phase counts. */
export function countsTable(loop: HandshakeLoop, phases: string[]): string {
  const rows = phases.map((p) => {
    const c = loop.countsOf(p);
    return `${p.padEnd(28)} valid ${String(c.validAccepted).padStart(6)} accepted / ${String(c.validRefused).padStart(3)} refused (${c.devicesAccepted.size} devices); revoked: ${c.probeRefused} refused, ${c.probeAccepted} accepted after refusal, ${c.probePendingAccepted} accepted before the CRL arrived${Object.keys(c.refusalReasons).length ? `; refusal reasons ${JSON.stringify(c.refusalReasons)}` : ''}`;
  });
  return rows.join('\n');
}

export interface RolloverRig {
  tmp: string;
  database: TestDatabase;
  env: Record<string, string>;
  broker: RunningMosquitto;
  t: TestService;
  /** https://127.0.0.1:PORT/.well-known/est */
  estUrl: string;
  /** What devices pass as CA file: the server CA and the Device CA (broker-config's combined-ca.crt). */
  combinedCa: string;
  trustFiles: { cafile: string; crlfile: string; capath?: string };
  port: number;
  close(): Promise<void>;
}

/**
 * The broker's files as an operator makes them (`certfleet broker-config`, free ports), Mosquitto
 * running that mosquitto.conf as written, certfleet on Postgres with the settings broker-config
 * printed (the local reload path: BROKER_PID_FILE) and EST on the broker's server certificate.
 */
export async function startRolloverRig(name: string, extraEnv: Record<string, string> = {}): Promise<RolloverRig> {
  const fixture = await brokerTestFixture(name);
  const { tmp, database } = fixture;
  const port = await freePort();
  let estPort = await freePort();
  while (estPort === port) estPort = await freePort();
  const config = await brokerConfigHere(fixture.env, join(tmp, 'broker'), ['--port', String(port)]);
  const combinedCa = readFileSync(config.files.combinedCa, 'utf8');
  const broker = await startMosquitto({ configDir: join(tmp, 'broker'), asWritten: true });
  const trustFiles = brokerTrustFiles(config.files.config);
  const env = {
    ...fixture.env,
    ...config.env,
    EST_PORT: String(estPort),
    EST_HOST: '127.0.0.1',
    EST_TLS_CERT_PATH: config.files.serverCert,
    EST_TLS_KEY_PATH: config.files.serverKey,
    // The broker's cafile, which certfleet keeps (every staged, active and retiring CA), if broker-config did not print it.
    ...(config.env.BROKER_CA_PATH ? {} : { BROKER_CA_PATH: trustFiles.cafile }),
    ...extraEnv,
  };
  const t = await startTestService(database, { dataDir: join(tmp, 'data'), env });
  const estUrl = (await t.service.renewal.start(t.service.app.log)).est!;
  return {
    tmp,
    database,
    env,
    broker,
    t,
    estUrl,
    combinedCa,
    trustFiles,
    port,
    close: () => closeBrokerTest({ service: t, broker, database, tmp }),
  };
}

/**
 * A device renews over EST and moves to its new certificate: simplereenroll with a new key, the
 * handshake loop switched to the new credential (once no attempt with the old one is in flight),
 * then the new certificate's first use (EST /cacerts) confirms the rotation, which revokes the old one.
 */
export async function renewAndConfirm(estUrl: string, caPem: string | Buffer, loop: HandshakeLoop, device: FleetDevice): Promise<{ previous: Credential; next: Credential }> {
  const next = await estReenroll(estUrl, caPem, device);
  const previous = await loop.switchTo(device, next);
  const use = await estRequest(estUrl, caPem, next, 'GET', 'cacerts');
  if (use.status !== 200) throw new Error(`EST cacerts with ${device.id}'s new certificate answered ${use.status}: ${use.body.slice(0, 300)}`);
  return { previous, next };
}

/** `fn` over `items`, `concurrency` at a time, in order. */
export async function inParallel<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}
