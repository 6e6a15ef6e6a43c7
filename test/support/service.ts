import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config.ts';
import { createManualClock, type ManualClock } from '../../src/domain/clock.ts';
import { loadOrCreateDevSigningKey } from '../../src/auth/dev-signing-key.ts';
import type { Role } from '../../src/auth/roles.ts';
import { createService, type Service, type ServiceOverrides } from '../../src/composition/service.ts';
import { devKeyPath } from '../../src/composition/token-verifier.ts';
import type { TestDatabase } from './databases.ts';
import { captureHandlerPayloads, serializationLoss } from './handler-payloads.ts';

export interface TestService {
  service: Service;
  config: Config;
  clock: ManualClock;
  dataDir: string;
  token(tenant: string | null, role?: Role): Promise<string>;
  /** app.inject with a bearer token for the tenant. */
  call(tenant: string | null, method: string, url: string, body?: unknown, role?: Role): Promise<{ status: number; json: any; body: string; headers: Record<string, unknown> }>;
  close(): Promise<void>;
}

export function testConfig(dataDir: string, env: Record<string, string> = {}): Config {
  // Tests mint development tokens, also where they run in production mode: say so explicitly.
  // The run's PGlite template (global-setup.ts) for a service that opens its own embedded database.
  const template = process.env.CERTFLEET_PGLITE_TEMPLATE ? { CERTFLEET_PGLITE_TEMPLATE: process.env.CERTFLEET_PGLITE_TEMPLATE } : {};
  // and its buffer pool size (global-setup.ts), as for the CLI processes the tests spawn.
  const buffers = process.env.CERTFLEET_PGLITE_SHARED_BUFFERS ? { CERTFLEET_PGLITE_SHARED_BUFFERS: process.env.CERTFLEET_PGLITE_SHARED_BUFFERS } : {};
  return loadConfig({ CERTFLEET_DATA_DIR: dataDir, PORT: '8080', CERTFLEET_AUTH: 'development', ...template, ...buffers, ...env });
}

/** A service on the given test database with a manual clock and its own data dir (dev CA, token key). */
export async function startTestService(
  database: TestDatabase,
  options: { env?: Record<string, string>; clock?: ManualClock; dataDir?: string; overrides?: ServiceOverrides } = {},
): Promise<TestService> {
  captureHandlerPayloads();
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'certfleet-test-'));
  const config = testConfig(dataDir, options.env);
  const clock = options.clock ?? createManualClock(new Date());
  const service = await createService(config, { clock, storage: database.storage, ...options.overrides });
  const key = await loadOrCreateDevSigningKey(devKeyPath(config));
  const tokens = new Map<string, string>();
  const token = async (tenant: string | null, role: Role = 'customer') => {
    const k = `${tenant}|${role}`;
    if (!tokens.has(k)) {
      tokens.set(k, await key.sign({ tenantId: tenant ?? undefined, roles: [role], subject: `test:${tenant}:${role}`, ttlSeconds: 3600, now: new Date() }));
    }
    return tokens.get(k)!;
  };
  return {
    service,
    config,
    clock,
    dataDir,
    token,
    async call(tenant, method, url, body, role = tenant ? 'customer' : 'operator') {
      const res = await service.app.inject({
        method: method as 'GET',
        url,
        headers: { authorization: `Bearer ${await token(tenant, role)}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
      });
      // Every 2xx JSON answer must be exactly what the handler returned: a field missing from
      // the route's response schema would be dropped by the serializer (or a value coerced).
      const loss = serializationLoss(res);
      if (loss) throw new Error(`${method} ${url}: the response schema changed the answer: ${loss}`);
      let json: unknown = null;
      try {
        json = res.json();
      } catch {
        json = null;
      }
      return { status: res.statusCode, json, body: res.body, headers: res.headers as Record<string, unknown> };
    },
    close: () => service.close(),
  };
}
