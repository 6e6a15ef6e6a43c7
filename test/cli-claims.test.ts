/**
 * certfleet claim-cas and provisioning-policy against a running service: a tenant admin registers
 * a manufacturer CA with its CRL (openssl), lists it, and sets the provisioning policy from a
 * file; a plain customer token is refused the changes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

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

describe('certfleet claim-cas / provisioning-policy', () => {
  let database: TestDatabase;
  let t: TestService;
  let url: string;
  let dir: string;
  const saved = { XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME, CERTFLEET_URL: process.env.CERTFLEET_URL, CERTFLEET_TOKEN: process.env.CERTFLEET_TOKEN };

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    url = await t.service.app.listen({ port: 0, host: '127.0.0.1' });
    process.env.XDG_CONFIG_HOME = mkdtempSync(join(tmpdir(), 'certfleet-cli-'));
    dir = mkdtempSync(join(tmpdir(), 'certfleet-cli-claims-'));
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'mfr.key', '-out', 'mfr.crt', '-days', '365',
      '-subj', '/CN=CLI Claim CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    writeFileSync(join(dir, 'ca.cnf'), '[ca]\ndefault_ca = c\n[c]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\ncertificate = mfr.crt\nprivate_key = mfr.key\n');
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'crlnumber'), '01\n');
    openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'mfr.crl']);
    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ admit: { cn_patterns: ['SN-*'] }, site_id: 'line-3' }));
  }, 120_000);
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
    await t?.close();
    await database?.close();
  });

  it('a tenant admin adds a claim CA with its CRL and sets the policy; a customer may only read', async () => {
    const admin = ['--url', url, '--token', await t.token('acme', 'tenant-admin')];
    const customer = ['--url', url, '--token', await t.token('acme')];
    expect((await cli(['claim-cas', 'add', join(dir, 'mfr.crt'), ...customer])).code).not.toBe(0);

    const added = await cli(['claim-cas', 'add', join(dir, 'mfr.crt'), '--name', 'line 3', '--crl', join(dir, 'mfr.crl'), '--json', ...admin]);
    expect(added.code, added.stderr).toBe(0);
    const created = JSON.parse(added.stdout).claim_ca;
    expect(created).toMatchObject({ name: 'line 3', subject: 'CN=CLI Claim CA', crl: { entries: 0 } });
    expect((await cli(['claim-cas', 'crl', String(created.id), join(dir, 'mfr.crl'), ...admin])).code).toBe(0);
    const listed = await cli(['claim-cas', 'list', ...customer]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('CN=CLI Claim CA');

    expect((await cli(['provisioning-policy', 'set', join(dir, 'policy.json'), ...customer])).code).not.toBe(0);
    const set = await cli(['provisioning-policy', 'set', join(dir, 'policy.json'), '--json', ...admin]);
    expect(set.code, set.stderr).toBe(0);
    const shown = JSON.parse((await cli(['provisioning-policy', 'show', '--json', ...customer])).stdout);
    expect(shown).toMatchObject({ default: false, policy: { admit: { cn_patterns: ['SN-*'] }, site_id: 'line-3' } });
    expect((await cli(['provisioning-policy', 'set', join(dir, 'missing.json'), ...admin])).code).toBe(2);
  });
});
