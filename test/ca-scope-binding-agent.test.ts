/**
 * The CA scope binding on the broker-agent path (certfleet on Postgres over HTTP, a real agent;
 * the broker is represented by its files and a counting reloader): with a tenant-scoped CA
 * published, `GET /pki/ca-scopes.pem` (role broker-agent) gives every trusted CA after its scope;
 * an agent with `--ca-scopes-file` (Mosquitto with the certfleet_acl plugin) writes that map before
 * the CA file and both hold the tenant CA; an agent without it (acl_file mode, RabbitMQ) leaves
 * the tenant CA out of the CA file, so such a broker refuses that CA's devices instead of letting
 * it sign for any tenant. The scope of each CA is its record's: the map never calls a tenant CA global.
 */
import 'reflect-metadata';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { createBrokerAgent, type BrokerAgent } from '../src/broker/agent/broker-agent.ts';
import { parseCaScopes } from '../src/broker/ca-scopes.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { silentLogger } from '../src/support/logger.ts';
import { brokerTestFixture } from './support/broker-fixture.ts';
import type { TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

let tmp: string;
let database: TestDatabase;
let env: Record<string, string>;
let t: TestService;
let baseUrl: string;
let tokenFile: string;
let globalCaPem: string;
let tenantCaPem: string;
const agents: BrokerAgent[] = [];

const subjects = (pem: string) => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new x509.X509Certificate(p).subject);
const subjectOf = (pem: string) => new x509.X509Certificate(pem).subject;

async function poll<T>(what: string, get: () => T, ok: (v: T) => boolean, timeoutMs = 120_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function pollAsync<T>(what: string, get: () => Promise<T | null>, timeoutMs = 120_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (v !== null) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startAgent(name: string, caScopesFile: boolean): Promise<{ caFile: string; scopesFile: string; reloads: () => number }> {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
  const tokenFile = join(dir, 'agent.token');
  writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: name, subject: `broker-node:${name}`, ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
  const caFile = join(dir, 'device-ca.crt');
  copyFileSync(env.DEVICE_CA_CERT_PATH, caFile);
  let reloads = 0;
  const agent = createBrokerAgent({
    url: baseUrl,
    tokenFile,
    node: name,
    kind: 'mosquitto',
    crlFile: join(dir, 'crl.pem'),
    caFile,
    caScopesFile: caScopesFile ? `${caFile}.scopes` : null,
    reloader: { configured: true, description: 'counting', reload: async () => void reloads++ },
    sessions: null,
    canary: null,
    stateDir: join(dir, 'state'),
    logger: silentLogger,
    waitSeconds: 5,
  });
  agents.push(agent);
  void agent.run();
  return { caFile, scopesFile: `${caFile}.scopes`, reloads: () => reloads };
}

beforeAll(async () => {
  ({ tmp, database, env } = await brokerTestFixture('ca-scope-agent'));
  t = await startTestService(database, { dataDir: join(tmp, 'data'), env });
  baseUrl = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
  const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
  tokenFile = join(tmp, 'agent.token');
  writeFileSync(tokenFile, await key.sign({ roles: ['broker-agent'], brokerNode: 'scoped-1', subject: 'broker-node:scoped-1', ttlSeconds: 3600, now: new Date() }), { mode: 0o600 });
  globalCaPem = readFileSync(env.DEVICE_CA_CERT_PATH, 'utf8');

  expect((await t.call('TA', 'POST', '/api/v1/customer/devices', { device_id: 'known' })).status).toBe(201);
  const ca = await createDeviceCa({ now: new Date(), commonName: 'Tenant TA own CA (agent test)' });
  tenantCaPem = ca.certPem;
  const imported = await t.call(null, 'POST', '/api/v1/operator/cas/import', { cert_pem: ca.certPem, key_pem: ca.keyPem, tenant_id: 'TA' }, 'operator-admin');
  expect(imported.status, imported.body).toBe(201);
  await t.service.crl.settled();
}, 180_000);

afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  await t?.close();
  await database?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('CA scopes on the broker-agent path', () => {
  it('GET /pki/ca-scopes.pem: every trusted CA after its scope, for broker agents only, with an ETag', async () => {
    const res = await fetch(`${baseUrl}/pki/ca-scopes.pem`, { headers: { authorization: `Bearer ${readFileSync(tokenFile, 'utf8')}` } });
    expect(res.status).toBe(200);
    const entries = parseCaScopes(await res.text());
    expect(entries.map((e) => [subjectOf(e.certPem), e.tenantId]).sort()).toEqual([
      [subjectOf(globalCaPem), null],
      [subjectOf(tenantCaPem), 'TA'],
    ].sort());
    const again = await fetch(`${baseUrl}/pki/ca-scopes.pem`, { headers: { authorization: `Bearer ${readFileSync(tokenFile, 'utf8')}`, 'if-none-match': res.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await fetch(`${baseUrl}/pki/ca-scopes.pem`)).status).toBe(401);
    const tenantToken = await t.token('TA', 'tenant-admin');
    expect((await fetch(`${baseUrl}/pki/ca-scopes.pem`, { headers: { authorization: `Bearer ${tenantToken}` } })).status).toBe(403);
  });

  it('an agent with --ca-scopes-file writes the map (tenant CA as TA) before the CA file, and the CA file gets the tenant CA', async () => {
    const node = await startAgent('scoped-1', true);
    await poll('the tenant CA in the CA file', () => subjects(readFileSync(node.caFile, 'utf8')), (s) => s.includes(subjectOf(tenantCaPem)));
    expect(existsSync(node.scopesFile)).toBe(true);
    // Written before the CA file: never older than it.
    expect(statSync(node.scopesFile).mtimeMs).toBeLessThanOrEqual(statSync(node.caFile).mtimeMs);
    const map = parseCaScopes(readFileSync(node.scopesFile, 'utf8'));
    expect(map.map((e) => [subjectOf(e.certPem), e.tenantId]).sort()).toEqual([
      [subjectOf(globalCaPem), null],
      [subjectOf(tenantCaPem), 'TA'],
    ].sort());
    expect(node.reloads()).toBeGreaterThan(0);
  });

  it('an agent without it (acl_file mode, RabbitMQ) leaves the tenant CA out of the CA file and writes no map', async () => {
    const node = await startAgent('unscoped-1', false);
    // Readiness: the agent's report, sent after it applied the bundle and wrote its CA file.
    await pollAsync('the agent to report the bundle applied', async () => {
      const res = await t.call(null, 'GET', '/api/v1/operator/broker-nodes', undefined, 'operator-admin');
      return (res.json.nodes as Array<{ node: string; applied_at: string | null }>).find((n) => n.node === 'unscoped-1')?.applied_at ?? null;
    });
    expect(subjects(readFileSync(node.caFile, 'utf8'))).toEqual([subjectOf(globalCaPem)]);
    expect(existsSync(node.scopesFile)).toBe(false);
  });
});
