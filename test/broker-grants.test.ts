/**
 * Tenant broker grants: validation (pure), the acl_file rendering, and the API
 * (GET/PUT /api/v1/customer/broker-grants: tenant-admin to change, audited, RLS per tenant),
 * with the acl_file rewritten by the keeping process after a change and after a registration.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderAclFile, renderGrantsFile } from '../src/broker/mosquitto-config.ts';
import { assertGrantFilter, assertGrants, deviceAclBlock, MAX_BROKER_GRANTS } from '../src/domain/broker-acl.ts';
import { AppError } from '../src/domain/errors.ts';
import { assertNotReserved } from '../src/domain/identifiers.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const refusedCode = (fn: () => unknown): string | null => {
  try {
    fn();
    return null;
  } catch (e) {
    return e instanceof AppError ? e.code : `not an AppError: ${String(e)}`;
  }
};

describe('grant filter validation', () => {
  it.each(['broadcast/#', 'broadcast', 'fleet/+/status', 'a.b:c-d/e_f', 'x/y/z/#', 'firmware/+', '../x'])('accepts %s', (filter) => {
    expect(assertGrantFilter(filter)).toBe(filter);
  });
  it.each([
    ['', 'empty'],
    ['device/#', 'another device’s subtree'],
    ['Device/x', 'case variant of device'],
    ['+/#', 'wildcard first level'],
    ['#', 'everything of the tenant, devices included'],
    ['+', 'wildcard first level'],
    ['$SYS/#', '$'],
    ['broadcast/$x', '$ anywhere'],
    ['/broadcast', 'leading empty level'],
    ['broadcast/', 'trailing empty level'],
    ['a//b', 'empty level'],
    ['a/#/b', '# not last'],
    ['a/b#', '# inside a level'],
    ['a/b+', '+ inside a level'],
    ['a b', 'whitespace'],
    ['a\nuser x', 'a new acl_file line'],
    ['a/'.repeat(9) + 'b', 'too deep'],
    ['x'.repeat(201), 'too long'],
    ['ünïcode', 'outside the alphabet'],
  ])('refuses %j (%s)', (filter) => {
    expect(refusedCode(() => assertGrantFilter(filter))).toBe('INVALID_BROKER_GRANT');
  });
  it('refuses duplicates, a bad access and too many grants', () => {
    expect(refusedCode(() => assertGrants([{ filter: 'a', access: 'read' }, { filter: 'a', access: 'write' }]))).toBe('INVALID_BROKER_GRANT');
    expect(refusedCode(() => assertGrants([{ filter: 'a', access: 'deny' as 'read' }]))).toBe('INVALID_BROKER_GRANT');
    const many = Array.from({ length: MAX_BROKER_GRANTS + 1 }, (_, i) => ({ filter: `t${i}`, access: 'read' as const }));
    expect(refusedCode(() => assertGrants(many))).toBe('INVALID_BROKER_GRANT');
  });
  it('refuses reserved tenant and device ids (case-insensitively)', () => {
    expect(refusedCode(() => assertNotReserved('certfleet', 'x'))).toBe('RESERVED_ID');
    expect(refusedCode(() => assertNotReserved('t', 'CertFleet'))).toBe('RESERVED_ID');
    expect(refusedCode(() => assertNotReserved('tenant', 'device'))).toBeNull();
  });
});

describe('acl_file rendering', () => {
  it('gives each device its own subtree and its tenant’s grants, every line under tenant/<its tenant>/', () => {
    expect(deviceAclBlock({ tenantId: 'T1', deviceId: 'D-1' }, [{ filter: 'broadcast/#', access: 'read' }])).toEqual([
      'user T1/D-1',
      'topic readwrite tenant/T1/device/D-1/#',
      'topic read tenant/T1/broadcast/#',
    ]);
  });
  it('skips invalid ids (never written) and reports them', () => {
    const acl = renderAclFile({ devices: [{ tenantId: 'T', deviceId: 'ok' }, { tenantId: 'T', deviceId: 'a/b' }, { tenantId: 'T', deviceId: 'x\ntopic readwrite #' }, { tenantId: '+', deviceId: 'd' }] });
    expect(acl.devices).toBe(1);
    expect(acl.skipped).toHaveLength(3);
    expect(acl.text).not.toContain('topic readwrite #\n');
    expect(acl.text).not.toMatch(/^pattern/m);
  });
  it('renewal adds exactly the three %u patterns (request, response, advice); permissive is refused together with renewal', () => {
    const acl = renderAclFile({ renewalTopics: true, adminUsername: 'certfleet-admin' });
    expect(acl.text.match(/^pattern .*$/gm)).toEqual(['pattern write certfleet/renew/%u/request', 'pattern read certfleet/renew/%u/response', 'pattern read certfleet/renew/%u/advice']);
    expect(() => renderAclFile({ renewalTopics: true, permissive: true })).toThrow(/permissive/);
    expect(renderAclFile({ permissive: true }).text).toMatch(/^pattern readwrite #$/m);
  });
  it('the longest ids still render one level each', () => {
    const long = `A${'b'.repeat(127)}`;
    expect(deviceAclBlock({ tenantId: long, deviceId: long }, [])).toEqual([`user ${long}/${long}`, `topic readwrite tenant/${long}/device/${long}/#`]);
    expect(deviceAclBlock({ tenantId: `${long}x`, deviceId: 'd' }, [])).toBeNull();
  });
});

describe('GET/PUT /api/v1/customer/broker-grants', () => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  const aclPath = () => join(dir, 'broker', 'acl');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'certfleet-grants-'));
    database = await createTestDatabase('pg');
    t = await startTestService(database, { dataDir: join(dir, 'data'), env: { BROKER_ACL_PATH: join(dir, 'broker', 'acl'), CRL_OUTPUT_PATH: join(dir, 'crl', 'crl.pem') } });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the acl_file at start, and with a registered device before the registration answers', async () => {
    expect(readFileSync(aclPath(), 'utf8')).not.toMatch(/^user /m);
    expect((await t.call('GA', 'POST', '/customer/devices', { device_id: 'dev-1' })).status).toBe(201);
    expect(readFileSync(aclPath(), 'utf8')).toContain('user GA/dev-1\ntopic readwrite tenant/GA/device/dev-1/#\n');
  });

  it('only a tenant-admin replaces the grants; bad filters get 422 INVALID_BROKER_GRANT; the change is audited and reaches the file', async () => {
    const body = { grants: [{ filter: 'broadcast/#', access: 'read' }] };
    const denied = await t.call('GA', 'PUT', '/customer/broker-grants', body);
    expect(denied.status).toBe(403);
    for (const filter of ['device/#', '+/x', '#', '$SYS/#', 'a//b']) {
      const bad = await t.call('GA', 'PUT', '/customer/broker-grants', { grants: [{ filter, access: 'read' }] }, 'tenant-admin');
      expect(bad.status, filter).toBe(422);
      expect(['INVALID_BROKER_GRANT', 'VALIDATION_FAILED']).toContain(bad.json.code);
    }
    const ok = await t.call('GA', 'PUT', '/customer/broker-grants', body, 'tenant-admin');
    expect(ok.status, ok.body).toBe(200);
    expect(ok.json).toEqual({ tenant_id: 'GA', topic_prefix: 'tenant/GA/', grants: body.grants });
    expect(readFileSync(aclPath(), 'utf8')).toContain('user GA/dev-1\ntopic readwrite tenant/GA/device/dev-1/#\ntopic read tenant/GA/broadcast/#\n');
    expect((await t.call('GA', 'GET', '/customer/broker-grants')).json.grants).toEqual(body.grants);
    const audit = await t.call('GA', 'GET', '/customer/audit-events');
    expect(audit.json.audit_events.map((e: { action: string }) => e.action)).toContain('broker_grants.updated');
  });

  it('another tenant sees none of them, and its devices do not get them', async () => {
    expect((await t.call('GB', 'GET', '/customer/broker-grants')).json.grants).toEqual([]);
    expect((await t.call('GB', 'POST', '/customer/devices', { device_id: 'dev-1' })).status).toBe(201);
    expect(readFileSync(aclPath(), 'utf8')).toMatch(/user GB\/dev-1\ntopic readwrite tenant\/GB\/device\/dev-1\/#\n(?!topic)/);
  });
});

describe('plugin mode (BROKER_GRANTS_PATH): the certfleet_acl grants file', () => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  const grantsPath = () => join(dir, 'broker', 'grants');
  const reloads = () => (existsSync(join(dir, 'reloads')) ? readFileSync(join(dir, 'reloads'), 'utf8').split('\n').filter(Boolean).length : 0);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'certfleet-grants-plugin-'));
    database = await createTestDatabase('pg');
    t = await startTestService(database, {
      dataDir: join(dir, 'data'),
      env: { BROKER_GRANTS_PATH: grantsPath(), BROKER_RELOAD_COMMAND: `echo reload >> ${join(dir, 'reloads')}`, CRL_OUTPUT_PATH: join(dir, 'crl', 'crl.pem') },
    });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const grantLines = () => readFileSync(grantsPath(), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));

  it('is written at start; a device registration leaves it as it is and reloads nothing; no acl_file is written', async () => {
    expect(grantLines()).toEqual([]);
    const before = readFileSync(grantsPath(), 'utf8');
    const reloadsBefore = reloads();
    for (const id of ['dev-1', 'dev-2', 'dev-3']) expect((await t.call('PA', 'POST', '/customer/devices', { device_id: id })).status).toBe(201);
    expect(readFileSync(grantsPath(), 'utf8')).toBe(before);
    expect(reloads()).toBe(reloadsBefore);
    expect(existsSync(join(dir, 'broker', 'acl'))).toBe(false);
  });

  it('a grant change rewrites it (one line per grant, no device) and reloads the broker before the answer', async () => {
    const reloadsBefore = reloads();
    const ok = await t.call('PA', 'PUT', '/customer/broker-grants', { grants: [{ filter: 'broadcast/#', access: 'read' }, { filter: 'uplink/+', access: 'write' }] }, 'tenant-admin');
    expect(ok.status, ok.body).toBe(200);
    expect(grantLines()).toEqual(['PA read broadcast/#', 'PA write uplink/+']);
    expect(reloads()).toBe(reloadsBefore + 1);
  });
});

describe('grants file rendering', () => {
  it('writes valid grants sorted by tenant; leaves out invalid tenants, certfleet’s own tenant and invalid grant lists', () => {
    const rendered = renderGrantsFile(
      new Map([
        ['TB', [{ filter: 'x/#', access: 'readwrite' as const }]],
        ['TA', [{ filter: 'broadcast/#', access: 'read' as const }]],
        ['bad tenant', [{ filter: 'a', access: 'read' as const }]],
        ['certfleet', [{ filter: 'a', access: 'read' as const }]],
        ['TC', [{ filter: 'device/#', access: 'read' as const }]],
      ]),
    );
    expect(rendered.text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual(['TA read broadcast/#', 'TB readwrite x/#']);
    expect(rendered.grants).toBe(2);
    expect(rendered.skipped.sort()).toEqual(['TC', 'bad tenant', 'certfleet']);
  });
});
