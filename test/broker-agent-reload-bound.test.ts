/**
 * The large-CRL reload bound on the broker-agent path (`--large-crl-bytes`,
 * `--large-crl-reload-interval`), with a real Mosquitto and certfleet on Postgres: after the agent
 * applied a large bundle, it fetches and reloads nothing until the interval is over, and every
 * revocation made meanwhile reaches the broker in ONE reload. A small bundle is never held back.
 *
 * No timing: the agent's wait for the bound is a seam the test holds and releases; readiness is
 * read from signals (the agent long-polling on certfleet, Mosquitto's "Reloading config" lines,
 * the broker's own answer to a handshake).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { createBrokerAgent, type BrokerAgent } from '../src/broker/agent/broker-agent.ts';
import { createBrokerReloader } from '../src/broker/broker-reloader.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { silentLogger } from '../src/support/logger.ts';
import { brokerTestFixture, brokerConfigHere } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { freePort, startMosquitto, type RunningMosquitto } from './support/mosquitto.ts';
import { tlsOptions } from './support/mqtt-clients.ts';
import { startTestService, type TestService } from './support/service.ts';

const TENANT = 'bound-tenant';

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let t: TestService;
let baseUrl: string;
let broker: RunningMosquitto;
let files: Record<string, string>;
let crlFile: string;
let tokenFile: string;
let reloads = 0;

const poll = async <T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs = 120_000): Promise<T> => {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const reloadsLogged = () => (broker.logs().match(/Reloading config/g) ?? []).length;

async function device(id: string) {
  expect((await t.call(TENANT, 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
  const res = await t.call(TENANT, 'POST', `/customer/devices/${id}/certificates/generate`, { key_type: 'ec-p256' });
  expect(res.status, res.body).toBe(201);
  const cert = join(tmp, 'certs', `${id}.crt`);
  const key = join(tmp, 'certs', `${id}.key`);
  writeFileSync(cert, res.json.cert_pem);
  writeFileSync(key, res.json.private_key_pem, { mode: 0o600 });
  return { id: res.json.certificate.id as number, cert, key };
}

async function probe(c: { cert: string; key: string }): Promise<string> {
  try {
    const client = await mqtt.connectAsync(`mqtts://localhost:${broker.port}`, { ...tlsOptions({ port: broker.port, cafile: files.combinedCa, ...c }), reconnectPeriod: 0, connectTimeout: 30_000 }, false);
    await client.endAsync(true);
    return 'accepted';
  } catch (error) {
    return /certificate revoked/.test((error as Error).message) ? 'revoked' : (error as Error).message;
  }
}

async function revoke(c: { id: number }) {
  const res = await t.call(TENANT, 'POST', `/customer/certificates/${c.id}/revoke`, { reason: 'keyCompromise' });
  expect(res.status, res.body).toBe(200);
}

/** The agent's waits for the bound, held until the test releases them. */
function heldBound() {
  const asked: Array<{ ms: number; release: () => void }> = [];
  return {
    asked,
    wait: (ms: number, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        asked.push({ ms, release: resolve });
        signal.addEventListener('abort', () => resolve(), { once: true });
      }),
  };
}

function agentWith(options: { largeCrlBytes: number; intervalMs: number; bound: ReturnType<typeof heldBound> }): BrokerAgent {
  const inner = createBrokerReloader({ pidFile: files.pidFile });
  return createBrokerAgent({
    url: baseUrl,
    tokenFile,
    node: 'bound-1',
    kind: 'mosquitto',
    crlFile,
    caFile: env.DEVICE_CA_CERT_PATH,
    reloader: { ...inner, reload: async () => void (reloads++, await inner.reload()) },
    sessions: null,
    canary: null,
    stateDir: join(tmp, 'agent-state'),
    logger: silentLogger,
    waitSeconds: 30,
    largeCrlBytes: options.largeCrlBytes,
    largeCrlReloadIntervalMs: options.intervalMs,
    waitOutReloadBound: options.bound.wait,
  });
}

/** The agent sits in its long poll, with nothing left to apply. */
const longPolling = () => poll('the agent long-polling on certfleet', () => t.service.crl.bundle!.waiting(), (n) => n === 1);

beforeAll(async () => {
  ({ tmp, database, env } = await brokerTestFixture('agent-bound'));
  t = await startTestService(database, { dataDir: join(tmp, 'data'), env });
  baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
  await t.service.crl.publisher!.idle(); // the start's publication is done: broker-config writes the latest CRL
  const dir = join(tmp, 'node');
  mkdirSync(join(dir, 'crl'), { recursive: true, mode: 0o755 });
  crlFile = join(dir, 'crl', 'crl.pem');
  const port = await freePort();
  files = (await brokerConfigHere({ ...env, CRL_OUTPUT_PATH: crlFile }, join(dir, 'broker'), ['--port', String(port), '--no-kick'])).files;
  broker = await startMosquitto({ configDir: join(dir, 'broker'), asWritten: true });
  const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
  tokenFile = join(tmp, 'agent.token');
  writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: 'bound-1', subject: 'broker-node:bound-1', ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
}, 180_000);

afterAll(async () => {
  await t?.close();
  await broker?.stop();
  await database?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('the broker agent bounds reloads of a large CRL (real Mosquitto)', () => {
  it('after a large bundle, revocations during the interval are held back and applied in one reload', async () => {
    const [a, b, c] = [await device('bound-a'), await device('bound-b'), await device('bound-c')];
    const bound = heldBound();
    // Every bundle counts as large here (1 byte); the interval is an hour: only the release ends it.
    const agent = agentWith({ largeCrlBytes: 1, intervalMs: 3_600_000, bound });
    void agent.run();
    try {
      await longPolling(); // the file broker-config wrote is the latest bundle: nothing applied, no reload
      expect(reloads).toBe(0);

      await revoke(a);
      await poll('the broker refuses the first revoked certificate', () => probe(a), (o) => o === 'revoked');
      expect(reloads).toBe(1);
      await poll('the agent waits out the bound after that large bundle', () => bound.asked.length, (n) => n === 1);
      expect(bound.asked[0]!.ms).toBeGreaterThan(3_500_000);
      expect(bound.asked[0]!.ms).toBeLessThanOrEqual(3_600_000);
      const appliedFile = readFileSync(crlFile);

      // Two revocations while the agent waits: certfleet publishes them, the node does not move.
      await revoke(b);
      await revoke(c);
      await t.service.crl.publisher!.idle();
      const latest = (await t.service.crl.bundle!.latest())!;
      expect(latest.pem.equals(appliedFile)).toBe(false);
      expect(t.service.crl.bundle!.waiting()).toBe(0); // no long poll during the bound
      expect(readFileSync(crlFile).equals(appliedFile)).toBe(true);
      expect(reloads).toBe(1);
      expect(await probe(b)).toBe('accepted'); // what the bound costs: b is refused one interval later
      expect(reloadsLogged()).toBe(1);

      // The interval is over: one reload carries both.
      bound.asked[0]!.release();
      await poll('the agent waits out the bound again after the next bundle', () => bound.asked.length, (n) => n === 2);
      expect(reloads).toBe(2);
      expect(readFileSync(crlFile).equals(latest.pem)).toBe(true);
      await poll('Mosquitto logged the second reload', reloadsLogged, (n) => n === 2);
      expect(await probe(b)).toBe('revoked');
      expect(await probe(c)).toBe('revoked');
      expect(reloadsLogged()).toBe(2);
      bound.asked[1]!.release();
    } finally {
      await agent.stop();
    }
  }, 240_000);

  it('a bundle below --large-crl-bytes is never held back: one reload per revocation', async () => {
    const [d, e] = [await device('bound-d'), await device('bound-e')];
    const bound = heldBound();
    const agent = agentWith({ largeCrlBytes: 1024 * 1024 * 1024, intervalMs: 3_600_000, bound });
    const before = reloads;
    void agent.run();
    try {
      await longPolling();
      await revoke(d);
      await poll('the broker refuses d', () => probe(d), (o) => o === 'revoked');
      await longPolling();
      await revoke(e);
      await poll('the broker refuses e', () => probe(e), (o) => o === 'revoked');
      expect(reloads).toBe(before + 2);
      expect(bound.asked).toEqual([]);
    } finally {
      await agent.stop();
    }
  }, 240_000);
});
