import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

/** Runs the CLI in this process (the service under test answers from the same event loop). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  try {
    return { code: await main(args), stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

describe('certfleet webhooks list/add: the operators register the endpoint of the system alerts', () => {
  let database: TestDatabase;
  let t: TestService;
  let url: string;
  const saved = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME, CERTFLEET_URL: process.env.CERTFLEET_URL, CERTFLEET_TOKEN: process.env.CERTFLEET_TOKEN };

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    url = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    process.env.XDG_CONFIG_HOME = mkdtempSync(join(tmpdir(), 'certfleet-cli-'));
  }, 120_000);
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
    await t?.close();
    await database?.close();
  });

  it('an operator adds and lists the operators endpoints (tenant __system__); a customer token is refused, and sees only its own', async () => {
    const operator = ['--url', url, '--token', await t.token(null, 'operator')];
    const added = await cli(['webhooks', 'add', 'https://oncall.example.com/certfleet', '--operator', '--description', 'pager', '--json', ...operator]);
    expect(added.code, added.stderr).toBe(0);
    const created = JSON.parse(added.stdout);
    expect(created).toMatchObject({ webhook: { tenant_id: '__system__', url: 'https://oncall.example.com/certfleet' }, secret: expect.stringMatching(/^whsec_/) });
    const listed = await cli(['webhooks', 'list', '--operator', ...operator]);
    expect(listed.stdout).toMatch(/ID\s+ENABLED\s+URL/);
    expect(listed.stdout).toContain('https://oncall.example.com/certfleet');
    expect(listed.stdout).not.toContain(created.secret);

    const customer = ['--url', url, '--token', await t.token('acme')];
    expect((await cli(['webhooks', 'list', '--operator', ...customer])).code).not.toBe(0);
    expect((await cli(['webhooks', 'add', 'https://evil.example.com/', '--operator', ...customer])).code).not.toBe(0);
    const own = await cli(['webhooks', 'list', '--json', ...customer]);
    expect(JSON.parse(own.stdout).webhooks).toEqual([]);
  });
});
