/**
 * Issue 9.2 for CRLs: every CRL is linted (parsed back apart from our encoder) before it is
 * stored or written; a failed lint stores nothing and names the rule (LINT_FAILED).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrl, encodeRevokedEntries, prepareCrl, type CrlInput } from '../src/crl/build-crl.ts';
import { AppError } from '../src/domain/errors.ts';
import { createPublishCrl } from '../src/crl/publish-crl.ts';
import { crlAuthorityFor, crlDistributionPointUrl } from '../src/crl/publish-crl.ts';
import { createDeviceCa, deviceCaFromPem, type DeviceCa } from '../src/pki/device-ca.ts';
import { caLintProfile, type CaLintProfile } from '../src/pki/lint/ca-profile.ts';
import { lintCrl } from '../src/pki/lint/crl-lint.ts';
import { LintFailure } from '../src/pki/lint/lint-failure.ts';
import { readCrlInfo } from '../src/storage/repos/crl-repo.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const serial = (n: number) => (0x40n * 2n ** 152n + BigInt(n)).toString(16);
const at = new Date('2026-05-01T00:00:00Z');

describe('CRL lint (unit)', () => {
  let ca: DeviceCa;
  let profile: CaLintProfile;
  let base: Omit<CrlInput, 'revoked'>;

  beforeAll(async () => {
    const created = await createDeviceCa({ now: new Date('2026-01-01T00:00:00Z') });
    ca = await deviceCaFromPem(created.certPem, created.keyPem);
    profile = caLintProfile(ca.certDer);
    const authority = crlAuthorityFor(ca);
    base = {
      issuerNameDer: authority.issuerNameDer,
      authorityKeyId: authority.authorityKeyId,
      thisUpdate: at,
      nextUpdate: new Date(at.getTime() + 7 * 86_400_000),
      crlNumber: 5n,
      distributionPointUrl: 'http://certfleet.test/pki/crl',
      signer: authority.signer,
    };
  });

  const entries = (...ns: number[]) => encodeRevokedEntries(ns.map((n) => ({ serialHex: serial(n), revokedAt: new Date(at.getTime() - 1000), reasonCode: 1 })));
  const ruleOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      if (e instanceof LintFailure) return e.rule;
      throw e;
    }
    return 'passed';
  };

  it('passes what the builder makes, with and without entries', () => {
    expect(lintCrl(buildCrl({ ...base, revoked: entries(1, 2, 3) }), { ca: profile, previousNumber: 4n })).toEqual({ crlNumber: 5n, entries: 3 });
    expect(lintCrl(buildCrl({ ...base, revoked: Buffer.alloc(0) }), { ca: profile, previousNumber: 0n }).entries).toBe(0);
  });

  it('names the rule that fails', () => {
    const crl = (revoked: Buffer, extra: Partial<CrlInput> = {}) => buildCrl({ ...base, revoked, ...extra });
    // Bytes our encoder would refuse to produce, spliced together: duplicates, disorder.
    expect(ruleOf(() => lintCrl(crl(Buffer.concat([entries(1, 2), entries(2)])), { ca: profile, previousNumber: 0n }))).toBe('crl.entries.order');
    expect(ruleOf(() => lintCrl(crl(Buffer.concat([entries(5), entries(3)])), { ca: profile, previousNumber: 0n }))).toBe('crl.entries.order');
    expect(ruleOf(() => lintCrl(crl(entries(1)), { ca: profile, previousNumber: 5n }))).toBe('crl.number');
    expect(ruleOf(() => lintCrl(crl(entries(1), { issuerNameDer: Buffer.from('3000', 'hex') }), { ca: profile, previousNumber: 0n }))).toBe('crl.issuer');
    const late = encodeRevokedEntries([{ serialHex: serial(1), revokedAt: new Date(at.getTime() + 2 * 3_600_000), reasonCode: 1 }]);
    expect(ruleOf(() => lintCrl(crl(late), { ca: profile, previousNumber: 0n }))).toBe('crl.entries.revocation_date');
    const negative = entries(1);
    negative[4] |= 0x80; // SEQ len, INTEGER len, first serial octet
    expect(ruleOf(() => lintCrl(crl(negative), { ca: profile, previousNumber: 0n }))).toBe('crl.entries.serial.sign');
    const hold = entries(1);
    hold[hold.length - 1] = 8; // removeFromCRL in a full CRL
    expect(ruleOf(() => lintCrl(crl(hold), { ca: profile, previousNumber: 0n }))).toBe('crl.entries.reason');
    const v1 = crl(entries(1));
    const versionAt = v1.indexOf(Buffer.from('020101', 'hex'));
    v1[versionAt + 2] = 0;
    expect(ruleOf(() => lintCrl(v1, { ca: profile, previousNumber: 0n }))).toBe('crl.version');
  });

  it('reads revocation dates exactly: an hour of clock skew after thisUpdate passes, one second more fails (leap days, 2050, 2100)', () => {
    for (const iso of ['2028-02-29T23:30:00Z', '2049-12-31T23:00:00Z', '2100-02-28T23:00:00Z', '2026-12-31T23:59:59Z']) {
      const thisUpdate = new Date(iso);
      const crlAt = (revokedAtMs: number) =>
        buildCrl({
          ...base,
          thisUpdate,
          nextUpdate: new Date(thisUpdate.getTime() + 86_400_000),
          revoked: encodeRevokedEntries([{ serialHex: serial(1), revokedAt: new Date(revokedAtMs), reasonCode: 1 }]),
        });
      expect(ruleOf(() => lintCrl(crlAt(thisUpdate.getTime() + 3_600_000), { ca: profile, previousNumber: 0n })), iso).toBe('passed');
      expect(ruleOf(() => lintCrl(crlAt(thisUpdate.getTime() + 3_601_000), { ca: profile, previousNumber: 0n })), iso).toBe('crl.entries.revocation_date');
    }
    const crl = buildCrl({ ...base, revoked: entries(1) });
    const day = crl.indexOf(Buffer.from(`${String(at.getUTCFullYear() % 100)}0430`, 'latin1')); // the entry's revocation date, a second before thisUpdate
    expect(day).toBeGreaterThan(0);
    crl.write('0230', day + 2, 'latin1'); // 30 February
    expect(ruleOf(() => lintCrl(crl, { ca: profile, previousNumber: 0n }))).toBe('crl.entries.revocation_date');
  });

  it('reads the entries once for two variants of one publication, and again whenever their bytes differ', () => {
    const linted = buildCrl({ ...base, revoked: entries(1, 2, 3), distributionPointUrl: undefined });
    const known = { der: linted, entries: lintCrl(linted, { ca: profile, previousNumber: 0n }).entries };
    expect(lintCrl(buildCrl({ ...base, revoked: entries(1, 2, 3) }), { ca: profile, previousNumber: 0n, entriesLike: known }).entries).toBe(3);
    const disordered = buildCrl({ ...base, revoked: Buffer.concat([entries(1), entries(3), entries(2)]) });
    expect(ruleOf(() => lintCrl(disordered, { ca: profile, previousNumber: 0n, entriesLike: known }))).toBe('crl.entries.order');
    const fewer = buildCrl({ ...base, revoked: entries(1, 2) });
    expect(lintCrl(fewer, { ca: profile, previousNumber: 0n, entriesLike: known }).entries).toBe(2);
  });
});

describe('CRL lint wired into publication', () => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    await t.service.crl.publisher!.idle();
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('a faulty encoder (CRL number going backwards) fails the lint: LINT_FAILED with the rule, nothing stored', async () => {
    const authority = crlAuthorityFor(t.service.ca.ca!);
    const before = await database.db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId));
    expect(before?.crlNumber).toBeGreaterThan(0n);
    const publish = createPublishCrl({
      storage: createStorage(database.db),
      clock: t.clock,
      authority,
      settings: { validityHours: 168, distributionPointUrl: crlDistributionPointUrl(t.config) },
      prepare: (input) => prepareCrl({ ...input, crlNumber: 1n }),
    });
    const error = await publish().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('LINT_FAILED');
    expect((error as AppError).details?.rule).toBe('crl.number');
    const after = await database.db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId));
    expect(after).toEqual(before);

    // The real encoder publishes and the lint passes it.
    const good = createPublishCrl({ storage: createStorage(database.db), clock: t.clock, authority, settings: { validityHours: 168, distributionPointUrl: crlDistributionPointUrl(t.config) } });
    const result = await good();
    expect(result.published).toBe(true);
  });
});
