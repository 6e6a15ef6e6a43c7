/**
 * Group commit of issued certificates (src/app/issued-certificate-store.ts), on PGlite and real
 * Postgres: certificates stored while a tenant's transaction is in flight go together in the
 * next one, each with exactly one audit event; a member that fails (unknown device, compromised
 * key, key of another device, even inside the same group) fails alone and loses none of the
 * others; tenants never share a group (row-level security applies to each). The key checks
 * before signing a device's CSR are grouped the same way (createKeyPrecheck).
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GROUPS_IN_FLIGHT, createIssuedCertificateStore } from '../src/app/issued-certificate-store.ts';
import { createKeyPrecheck, spkiSha256 } from '../src/app/sign-device-certificate.ts';
import type { Storage } from '../src/app/storage-ports.ts';
import type { CertificateAuthority } from '../src/app/ports.ts';
import { AppError } from '../src/domain/errors.ts';
import { createCertificateAuthority } from '../src/pki/certificate-authority.ts';
import { createDeviceCa, deviceCaFromPem } from '../src/pki/device-ca.ts';
import { spkiOf } from '../src/pki/keys.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { DRIVERS, createTestDatabase, type TestDatabase } from './support/databases.ts';

const DAY = 86_400_000;
const now = new Date();
const actor = (tenantId: string) => ({ id: `test:${tenantId}`, tenantId });

describe.each(DRIVERS)('group commit of issued certificates (%s)', (kind) => {
  let database: TestDatabase;
  let storage: Storage;
  let authority: CertificateAuthority;
  let groups: { tenantId: string; size: number }[];

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    const created = await createDeviceCa({ now: new Date(now.getTime() - DAY), keyType: 'ec-p256' });
    authority = createCertificateAuthority(await deviceCaFromPem(created.certPem, created.keyPem), { crlUrl: 'http://certfleet.test/pki/crl' });
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    const real = createStorage(database.db);
    groups = [];
    // The real storage, with each group statement's size recorded on its way through.
    storage = {
      ...real,
      asTenant: (tenantId, fn, options) =>
        real.asTenant(tenantId, (repos) =>
          fn({
            ...repos,
            certificates: {
              ...repos.certificates,
              insertIssuedCertificates: (members) => {
                groups.push({ tenantId, size: members.length });
                return repos.certificates.insertIssuedCertificates(members);
              },
            },
          }),
          options,
        ),
    };
    for (const [tenant, devices] of [['acme', 10], ['globex', 3]] as const) {
      for (let d = 0; d < devices; d++) await real.asTenant(tenant, (repos) => repos.devices.insertDevice({ tenantId: tenant, deviceId: `D${d}`, siteId: null, now }));
    }
  });

  /** A certificate signed by the CA for tenant/device (with the given key, else a new one). */
  async function signed(tenantId: string, deviceId: string, spkiDer = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)) {
    const issued = await authority.issue({ tenantId, commonName: `${tenantId}/${deviceId}`, publicKey: { spkiDer, keyType: 'ec-p256' }, notBefore: now, notAfter: new Date(now.getTime() + 30 * DAY) });
    return { ...issued, spkiSha256: spkiSha256(spkiDer) };
  }

  const audits = (tenantId: string) =>
    storage.asTenant(tenantId, (repos) => repos.audit.listAuditEvents({ tenantId, action: 'certificate.issued', limit: 1000 })).then((p) => p.events);
  const certificates = (tenantId: string) =>
    storage.asTenant(tenantId, (repos) => repos.certificates.listCertificates({ tenantId, limit: 1000 })).then((p) => p.certificates);

  it('certificates stored while a group is in flight go together in the next one, each with exactly one audit event', async () => {
    const store = createIssuedCertificateStore({ storage });
    const certs = await Promise.all(Array.from({ length: 30 }, (_, i) => signed('acme', `D${i % 10}`)));
    const records = await Promise.all(certs.map((c, i) => store.store(actor('acme'), `D${i % 10}`, c, now, 'certificate.issued', { key_source: 'generate' })));
    // Nothing in flight: the first two go at once, alone (GROUPS_IN_FLIGHT); the other 28 wait and go together.
    expect(GROUPS_IN_FLIGHT).toBe(2);
    // The two single groups and the 28 may be recorded in either order (the statements run concurrently).
    expect(groups.every((g) => g.tenantId === 'acme')).toBe(true);
    expect(groups.map((g) => g.size).sort((a, b) => a - b)).toEqual([1, 1, 28]);
    expect(records.map((r) => r.fingerprint_sha256)).toEqual(certs.map((c) => c.fingerprint));
    expect(records.map((r) => r.device_id)).toEqual(certs.map((_, i) => `D${i % 10}`));
    const stored = await certificates('acme');
    expect(stored.map((c) => c.id).sort((a, b) => a - b)).toEqual(records.map((r) => r.id).sort((a, b) => a - b));
    const events = await audits('acme');
    expect(events).toHaveLength(30);
    expect(new Set(events.map((e) => e.target_id))).toEqual(new Set(records.map((r) => String(r.id))));
    for (const e of events) {
      const record = records.find((r) => String(r.id) === e.target_id)!;
      expect(e.details).toMatchObject({ device_id: record.device_id, fingerprint: record.fingerprint_sha256, serial_number: record.serial_number, key_source: 'generate' });
    }
    // The device summary (migration 024's trigger, once per group) counts every certificate.
    const page = await storage.asTenant('acme', (repos) => repos.devices.listDevices({ tenantId: 'acme', limit: 100 }));
    expect(page.devices.map((d) => [d.device_id, d.certificate_status, d.active_certificates])).toEqual(Array.from({ length: 10 }, (_, d) => [`D${d}`, 'ACTIVE', 3]));
  });

  it('a failed member fails alone: unknown device, compromised key, another device’s key, a key repeated in the group', async () => {
    const store = createIssuedCertificateStore({ storage });
    // A key revoked for keyCompromise, and a key already certified for D9.
    const compromised = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const first = await store.store(actor('acme'), 'D8', await signed('acme', 'D8', compromised), now, 'certificate.issued', {});
    await storage.asTenant('acme', async (repos) => {
      await repos.certificates.markRevoked(first.id, 'keyCompromise', now);
      await repos.keys.markKeyCompromised(first.id, now);
    });
    const held = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    await store.store(actor('acme'), 'D9', await signed('acme', 'D9', held), now, 'certificate.issued', {});
    const repeated = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    groups = [];

    const members = [
      ['D0', await signed('acme', 'D0')], // alone in the first group (nothing in flight)
      ['D7', await signed('acme', 'D7')], // alone in the second
      ['D1', await signed('acme', 'D1')],
      ['NO-SUCH-DEVICE', await signed('acme', 'NO-SUCH-DEVICE')],
      ['D2', await signed('acme', 'D2', compromised)],
      ['D3', await signed('acme', 'D3', held)],
      ['D4', await signed('acme', 'D4', repeated)],
      ['D5', await signed('acme', 'D5', repeated)],
      ['D6', await signed('acme', 'D6')],
    ] as const;
    const outcomes = await Promise.allSettled(members.map(([device, cert]) => store.store(actor('acme'), device, cert, now, 'certificate.issued', {})));
    const code = (o: PromiseSettledResult<unknown>) => (o.status === 'rejected' ? (o.reason as AppError).code : 'stored');
    expect(outcomes.map(code)).toEqual(['stored', 'stored', 'stored', 'DEVICE_NOT_FOUND', 'KEY_COMPROMISED', 'KEY_IN_USE', 'stored', 'KEY_IN_USE', 'stored']);
    // D5 (the repeated key) is left out of the group that stores D4 and stored alone. The order of
    // the groups is timing: D7 is alone only when it arrives while D0's group is in flight, and a
    // busy machine (a CI run at load 3) queued it with the six instead ([1, 6, 1]).
    expect(groups.map((g) => g.size).sort((a, b) => a - b)).toEqual([1, 1, 6]);

    const storedIds = outcomes.filter((o) => o.status === 'fulfilled').map((o) => String((o as PromiseFulfilledResult<{ id: number }>).value.id));
    const events = await audits('acme');
    expect(events).toHaveLength(2 + storedIds.length); // the two set-up certificates, then one per stored member
    for (const id of storedIds) expect(events.filter((e) => e.target_id === id)).toHaveLength(1);
    expect((await certificates('acme')).length).toBe(2 + storedIds.length);
  });

  it("CSR key checks before signing go in groups too, each member with its own answer (compromised, another device's key, its own device's earlier key)", async () => {
    const store = createIssuedCertificateStore({ storage });
    const compromised = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const first = await store.store(actor('acme'), 'D8', await signed('acme', 'D8', compromised), now, 'certificate.issued', {});
    await storage.asTenant('acme', async (repos) => {
      await repos.certificates.markRevoked(first.id, 'keyCompromise', now);
      await repos.keys.markKeyCompromised(first.id, now);
    });
    const held = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    await store.store(actor('acme'), 'D9', await signed('acme', 'D9', held), now, 'certificate.issued', {});
    // The key statements on their way through: single checks (keyStatus) and groups (keyStatuses).
    const statements: number[] = [];
    const counted: Storage = {
      ...storage,
      asTenant: (tenantId, fn) =>
        storage.asTenant(tenantId, (repos) =>
          fn({
            ...repos,
            keys: {
              ...repos.keys,
              keyStatus: (...args) => (statements.push(1), repos.keys.keyStatus(...args)),
              keyStatuses: (t, items) => (statements.push(items.length), repos.keys.keyStatuses(t, items)),
            },
          }),
        ),
    };
    const precheck = createKeyPrecheck(counted);
    const fresh = () => spkiSha256(spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey));
    const checks: Array<[string, string]> = [
      ...Array.from({ length: 20 }, (_, i): [string, string] => [`D${i % 8}`, fresh()]),
      ['D1', spkiSha256(compromised)],
      ['D2', spkiSha256(held)],
      ['D9', spkiSha256(held)], // D9's own key again: allowed
      ['D3', fresh()],
    ];
    const outcomes = await Promise.allSettled(checks.map(([device, spki]) => precheck('acme', device, spki)));
    const code = (o: PromiseSettledResult<unknown>) => (o.status === 'rejected' ? (o.reason as AppError).code : 'ok');
    expect(outcomes.map(code)).toEqual([...Array.from({ length: 20 }, () => 'ok'), 'KEY_COMPROMISED', 'KEY_IN_USE', 'ok', 'ok']);
    // Made in one event-loop turn: the 24 go together in one statement (not 24 transactions; before
    // the checks gathered for the rest of the turn, the first two went alone and the other 22 together).
    expect(statements.sort((a, b) => a - b)).toEqual([24]);
  });

  /** The storage with each transaction and each key statement counted on its way through. */
  function countedStorage() {
    const count = { transactions: 0, keyStatuses: [] as number[], keyStatus: 0, genericPlans: 0 };
    const counted: Storage = {
      ...storage,
      asTenant: (tenantId, fn, options) => {
        count.transactions++;
        if (options?.genericPlans) count.genericPlans++;
        return storage.asTenant(tenantId, (repos) =>
          fn({
            ...repos,
            keys: {
              ...repos.keys,
              keyStatus: (...args) => (count.keyStatus++, repos.keys.keyStatus(...args)),
              keyStatuses: (t, items) => (count.keyStatuses.push(items.length), repos.keys.keyStatuses(t, items)),
            },
          }),
          options,
        );
      },
    };
    return { counted, count };
  }

  it("a device's own key is checked in the group's storing transaction, before signing: a refused key is never signed, the others are signed and stored in that one transaction", async () => {
    const setup = createIssuedCertificateStore({ storage });
    const compromised = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const first = await setup.store(actor('acme'), 'D8', await signed('acme', 'D8', compromised), now, 'certificate.issued', {});
    await storage.asTenant('acme', async (repos) => {
      await repos.certificates.markRevoked(first.id, 'keyCompromise', now);
      await repos.keys.markKeyCompromised(first.id, now);
    });
    const held = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    await setup.store(actor('acme'), 'D9', await signed('acme', 'D9', held), now, 'certificate.issued', {});
    const repeated = spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const fresh = () => spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const keys: Array<[string, Buffer]> = [
      ['D0', fresh()], // alone in the first group (nothing in flight)
      ['D7', fresh()], // alone in the second
      ['D1', fresh()],
      ['D2', compromised],
      ['D9', held], // D9's own key again: allowed
      ['D3', held], // D9's key, also in the group: checked alone after it (and refused)
      ['D4', repeated],
      ['D5', repeated], // the same key as D4 in the same group: checked alone after it (and refused)
      ['D6', fresh()],
    ];
    const certs = new Map<string, Awaited<ReturnType<typeof signed>>>();
    for (const [device, spki] of keys) certs.set(device, await signed('acme', device, spki));
    const { counted, count } = countedStorage();
    const store = createIssuedCertificateStore({ storage: counted });
    groups = [];
    const signedFor: string[] = [];
    const outcomes = await Promise.allSettled(
      keys.map(([device, spki]) =>
        store.signAndStore(actor('acme'), device, spkiSha256(spki), async () => {
          signedFor.push(device);
          return { cert: certs.get(device)!, at: now, details: { key_source: 'csr' } };
        }, 'certificate.issued'),
      ),
    );
    const code = (o: PromiseSettledResult<unknown>) => (o.status === 'rejected' ? (o.reason as AppError).code : 'stored');
    expect(outcomes.map(code)).toEqual(['stored', 'stored', 'stored', 'KEY_COMPROMISED', 'stored', 'KEY_IN_USE', 'stored', 'KEY_IN_USE', 'stored']);
    expect(signedFor.sort()).toEqual(['D0', 'D1', 'D4', 'D6', 'D7', 'D9']); // never D2, D3 nor D5
    // Per group one check statement (1, 1, then 5: D3 and D5 left out), one insert (D2 refused), one
    // transaction; D3 and D5 alone: a check each (a transaction each), both refused.
    // The groups' statements run concurrently, so the order in which they are recorded is timing (a
    // clean-clone CI run recorded the inserts as [1, 4, 1]): the sizes are compared as sets.
    const sorted = (sizes: number[]) => [...sizes].sort((a, b) => a - b);
    expect(sorted(count.keyStatuses)).toEqual([1, 1, 5]);
    expect(sorted(groups.map((g) => g.size))).toEqual([1, 1, 4]);
    expect(count.keyStatus).toBe(2);
    expect(count.transactions).toBe(5);
    expect(count.genericPlans).toBe(3); // the three group transactions (TenantWorkOptions.genericPlans), not the lone checks
    const fulfilled = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    expect(fulfilled.map((f) => f.signed.cert.fingerprint)).toEqual(['D0', 'D7', 'D1', 'D9', 'D4', 'D6'].map((d) => certs.get(d)!.fingerprint));
    const events = await audits('acme');
    expect(events).toHaveLength(2 + fulfilled.length);
    for (const f of fulfilled) {
      expect(events.filter((e) => e.target_id === String(f.record.id))).toHaveLength(1);
      expect(events.find((e) => e.target_id === String(f.record.id))!.details).toMatchObject({ device_id: f.record.device_id, fingerprint: f.record.fingerprint_sha256, key_source: 'csr' });
    }
    expect((await certificates('acme')).length).toBe(2 + fulfilled.length);
  });

  it("a device's own key in a group whose statement fails (an unknown device): each member checked, signed and stored alone, with its own outcome; a signing failure is that member's", async () => {
    const store = createIssuedCertificateStore({ storage });
    const fresh = () => spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
    const members: Array<[string, Buffer, boolean]> = [
      ['D0', fresh(), false],
      ['D1', fresh(), false],
      ['D2', fresh(), false],
      ['NO-SUCH-DEVICE', fresh(), false],
      ['D3', fresh(), true], // its signing fails
      ['D4', fresh(), false],
    ];
    const outcomes = await Promise.allSettled(
      members.map(([device, spki, fails]) =>
        store.signAndStore(actor('acme'), device, spkiSha256(spki), async () => {
          if (fails) throw new AppError('LINT_FAILED', 'refused by lint');
          return { cert: await signed('acme', device, spki), at: now, details: {} };
        }, 'certificate.issued'),
      ),
    );
    const code = (o: PromiseSettledResult<unknown>) => (o.status === 'rejected' ? (o.reason as AppError).code : 'stored');
    expect(outcomes.map(code)).toEqual(['stored', 'stored', 'stored', 'DEVICE_NOT_FOUND', 'LINT_FAILED', 'stored']);
    expect(await certificates('acme')).toHaveLength(4);
    expect(await audits('acme')).toHaveLength(4);
  });

  it('a tenant transaction with genericPlans runs its prepared statements on their generic plan; any other keeps the default', async () => {
    const mode = (options?: { genericPlans?: boolean }) =>
      database.db.asTenant('acme', async (tx) => (await tx.query<{ m: string }>("SELECT current_setting('plan_cache_mode') AS m")).rows[0]!.m, options);
    expect(await mode({ genericPlans: true })).toBe('force_generic_plan');
    expect(await mode()).toBe('auto');
    expect(await mode({ genericPlans: false })).toBe('auto');
  });

  it('tenants never share a group; each certificate and audit event belongs to its tenant', async () => {
    const store = createIssuedCertificateStore({ storage });
    const work = [
      ...Array.from({ length: 6 }, (_, i) => ['acme', `D${i}`] as const),
      ...Array.from({ length: 6 }, (_, i) => ['globex', `D${i % 3}`] as const),
    ];
    const certs = await Promise.all(work.map(([tenant, device]) => signed(tenant, device)));
    // globex has no D5: a globex group naming acme's device fails for that member only.
    const outcomes = await Promise.allSettled([
      ...work.map(([tenant, device], i) => store.store(actor(tenant), device, certs[i], now, 'certificate.issued', {})),
      store.store(actor('globex'), 'D5', await signed('globex', 'D5'), now, 'certificate.issued', {}),
    ]);
    expect(outcomes.slice(0, 12).every((o) => o.status === 'fulfilled')).toBe(true);
    expect((outcomes[12] as PromiseRejectedResult).reason).toMatchObject({ code: 'DEVICE_NOT_FOUND' });
    expect(groups.every((g) => g.size >= 1)).toBe(true);
    expect(groups.filter((g) => g.tenantId === 'acme').reduce((n, g) => n + g.size, 0)).toBe(6);
    expect((await certificates('acme')).every((c) => c.tenant_id === 'acme')).toBe(true);
    expect(await certificates('acme')).toHaveLength(6);
    expect(await certificates('globex')).toHaveLength(6);
    expect((await audits('globex')).every((e) => e.tenant_id === 'globex')).toBe(true);
    expect(await audits('globex')).toHaveLength(6);
  });
});
