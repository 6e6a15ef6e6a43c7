/**
 * Issue 9.2 for CRLs: every CRL is linted (parsed back apart from our encoder) before it is
 * stored or written; a failed lint stores nothing and names the rule (LINT_FAILED).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCrl, createRevokedEntriesEncoder, encodeRevokedEntries, prepareCrl, revokedList, type CrlInput, type SortedEntries } from '../src/crl/build-crl.ts';
import { mergeEntries } from '../src/crl/incremental-entries.ts';
import { markRevoked } from '../src/storage/repos/certificates-repo.ts';
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

describe('CRL lint of an incremental publication (entries carried over from the CRL linted before)', () => {
  let profile: CaLintProfile;
  let base: Omit<CrlInput, 'revoked'>;
  beforeAll(async () => {
    const created = await createDeviceCa({ now: new Date('2026-01-01T00:00:00Z') });
    const ca = await deviceCaFromPem(created.certPem, created.keyPem);
    profile = caLintProfile(ca.certDer);
    const authority = crlAuthorityFor(ca);
    base = { issuerNameDer: authority.issuerNameDer, authorityKeyId: authority.authorityKeyId, thisUpdate: at, nextUpdate: new Date(at.getTime() + 7 * 86_400_000), crlNumber: 5n, signer: authority.signer };
  });
  const sorted = (ns: number[]): SortedEntries => {
    const encoder = createRevokedEntriesEncoder({ times: true });
    for (const n of ns) encoder.add({ serialHex: serial(n), revokedAt: new Date(at.getTime() - 1000 * (1 + (n % 7))), reasonCode: 1, notAfterMs: at.getTime() + 86_400_000 });
    return encoder.finishSorted();
  };
  /** The previous CRL (linted in full), and its list contents: what publish-crl keeps beside the entries. */
  const previousOf = (entries: SortedEntries) => {
    const crl = buildCrl({ ...base, crlNumber: 4n, revoked: entries.bytes });
    expect(lintCrl(crl, { ca: profile, previousNumber: 3n }).entries).toBe(entries.offsets.length);
    const list = revokedList(crl)!;
    return crl.subarray(list.valueStart, list.end);
  };
  const ruleOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      if (e instanceof LintFailure) return e.rule;
      throw e;
    }
    return 'passed';
  };

  it('gives the full lint\'s count and verdict over random merges (inserted, replaced, expired entries)', () => {
    let seed = 11;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 30; round++) {
      const old = [...new Set(Array.from({ length: 1 + Math.floor(random() * 60) }, () => Math.floor(random() * 500)))];
      const prev = sorted(old);
      const previous = previousOf(prev);
      const added = sorted([...new Set(Array.from({ length: Math.floor(random() * 6) }, () => Math.floor(random() * 520)))]);
      const merged = mergeEntries(prev, added, null);
      const crl = buildCrl({ ...base, revoked: merged.entries.bytes });
      const full = lintCrl(crl, { ca: profile, previousNumber: 4n });
      expect(lintCrl(crl, { ca: profile, previousNumber: 4n, carried: { previous, runs: merged.carried } }), `round ${round}`).toEqual(full);
    }
  });

  it('fails a carried run whose bytes differ from the entries linted before (memory written over), before any CA signature', () => {
    const prev = sorted([1, 3, 5, 7, 9]);
    const previous = previousOf(prev);
    const merged = mergeEntries(prev, sorted([4]), null);
    const bytes = Buffer.from(merged.entries.bytes);
    // 30 February in entry 9's revocation date: the full lint would name the date; the carried lint never reads it, it compares.
    const day = bytes.lastIndexOf(Buffer.from(`${String(at.getUTCFullYear() % 100)}04`, 'latin1'));
    bytes.write('0230', day + 2, 'latin1');
    const crl = buildCrl({ ...base, revoked: bytes });
    expect(ruleOf(() => lintCrl(crl, { ca: profile, previousNumber: 4n }))).toBe('crl.entries.revocation_date');
    expect(ruleOf(() => lintCrl(crl, { ca: profile, previousNumber: 4n, carried: { previous, runs: merged.carried } }))).toBe('crl.entries.carried');
  });

  it('lints the entries not carried in full, and their order against the carried neighbours', () => {
    const prev = sorted([1, 3, 5]);
    const previous = previousOf(prev);
    // A new entry with removeFromCRL (not allowed in a full CRL)
    const bad = sorted([4]);
    bad.bytes[bad.bytes.length - 1] = 8; // the encoder refuses to write it: patched in
    const m1 = mergeEntries(prev, bad, null);
    expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: m1.entries.bytes }), { ca: profile, previousNumber: 4n, carried: { previous, runs: m1.carried } }))).toBe('crl.entries.reason');
    // Runs that claim 1 and 3, then a new entry 2 spliced after them (an order bug in the merge)
    const one = sorted([1]);
    const three = sorted([3]);
    const two = sorted([2]);
    const spliced = Buffer.concat([one.bytes, three.bytes, two.bytes]);
    const runs = Uint32Array.from([0, one.bytes.length + three.bytes.length, 0]);
    expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: spliced }), { ca: profile, previousNumber: 4n, carried: { previous, runs } }))).toBe('crl.entries.order');
    // A run that does not start on an entry boundary, or runs past the previous list
    const m2 = mergeEntries(prev, sorted([4]), null);
    const shifted = Uint32Array.from(m2.carried);
    shifted[0] += 1;
    shifted[2] += 1;
    expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: m2.entries.bytes }), { ca: profile, previousNumber: 4n, carried: { previous, runs: shifted } }))).not.toBe('passed');
    const beyond = Uint32Array.from(m2.carried);
    beyond[beyond.length - 1] = previous.length;
    expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: m2.entries.bytes }), { ca: profile, previousNumber: 4n, carried: { previous, runs: beyond } }))).toBe('crl.entries.carried');
  });
  describe('with the earlier lint\'s entry offsets (previousOffsets): runs not walked entry by entry', () => {
    /** The previous CRL linted in full with its offsets checked: what publish-crl keeps (list contents and offsets). */
    const previousWithOffsets = (entries: SortedEntries) => {
      const crl = buildCrl({ ...base, crlNumber: 4n, revoked: entries.bytes });
      const linted = lintCrl(crl, { ca: profile, previousNumber: 3n, offsets: entries.offsets });
      expect(linted.offsetsChecked).toBe(true);
      const list = revokedList(crl)!;
      return { previous: crl.subarray(list.valueStart, list.end), previousOffsets: entries.offsets };
    };

    it('gives the full lint\'s count and verdict over random merges, and checks the merged offsets', () => {
      let seed = 29;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      for (let round = 0; round < 40; round++) {
        const old = [...new Set(Array.from({ length: 1 + Math.floor(random() * 60) }, () => Math.floor(random() * 500)))];
        const prev = sorted(old);
        const kept = previousWithOffsets(prev);
        const added = sorted([...new Set(Array.from({ length: Math.floor(random() * 6) }, () => Math.floor(random() * 520)))]);
        const merged = mergeEntries(prev, added, round % 3 === 0 ? Math.floor(at.getTime() / 1000) + 2 * 86_400 : null);
        const crl = buildCrl({ ...base, revoked: merged.entries.bytes });
        const full = lintCrl(crl, { ca: profile, previousNumber: 4n });
        const carried = lintCrl(crl, { ca: profile, previousNumber: 4n, carried: { ...kept, runs: merged.carried }, offsets: merged.entries.offsets });
        expect({ crlNumber: carried.crlNumber, entries: carried.entries }, `round ${round}`).toEqual(full);
        expect(carried.offsetsChecked).toBe(true);
      }
    });

    it('fails offsets that are not the entries\' starts (in a carried run, in a new entry, or a count off by one)', () => {
      const prev = sorted([1, 3, 5, 7, 9]);
      const kept = previousWithOffsets(prev);
      const merged = mergeEntries(prev, sorted([4]), null);
      const crl = buildCrl({ ...base, revoked: merged.entries.bytes });
      const lint = (offsets: Uint32Array, previousOffsets = kept.previousOffsets) =>
        ruleOf(() => lintCrl(crl, { ca: profile, previousNumber: 4n, carried: { previous: kept.previous, previousOffsets, runs: merged.carried }, offsets }));
      expect(lint(merged.entries.offsets)).toBe('passed');
      for (const index of [0, 2, 4]) {
        const wrong = Uint32Array.from(merged.entries.offsets);
        wrong[index]! += 1;
        expect(lint(wrong), `entry ${index}`).toBe('crl.entries.offsets');
      }
      expect(lint(merged.entries.offsets.subarray(0, 5))).toBe('crl.entries.offsets');
      // The full lint checks them too (a full read's offsets become the next previousOffsets).
      const wrong = Uint32Array.from(prev.offsets);
      wrong[3]! -= 1;
      expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: prev.bytes }), { ca: profile, previousNumber: 4n, offsets: wrong }))).toBe('crl.entries.offsets');
      // Earlier offsets that do not put a run's ends on entry starts: the run is refused.
      const shiftedPrevious = Uint32Array.from(kept.previousOffsets);
      shiftedPrevious[2]! += 1; // the run after the new entry 4 starts at entry 5 (index 2) of the earlier list
      expect(lint(merged.entries.offsets, shiftedPrevious)).toBe('crl.entries.carried');
      // Inside a run: the merged offsets no longer match the earlier ones shifted.
      const inside = Uint32Array.from(kept.previousOffsets);
      inside[3]! += 1;
      expect(lint(merged.entries.offsets, inside)).toBe('crl.entries.offsets');
    });

    it('fails written-over memory, a run ending inside an entry, and disorder at a run boundary', () => {
      const prev = sorted([1, 3, 5, 7, 9]);
      const kept = previousWithOffsets(prev);
      const merged = mergeEntries(prev, sorted([4]), null);
      const bytes = Buffer.from(merged.entries.bytes);
      const day = bytes.lastIndexOf(Buffer.from(`${String(at.getUTCFullYear() % 100)}04`, 'latin1'));
      bytes.write('0230', day + 2, 'latin1');
      expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: bytes }), { ca: profile, previousNumber: 4n, carried: { ...kept, runs: merged.carried } }))).toBe('crl.entries.carried');
      // A run whose end is not an entry end of the earlier list (one byte short: the rest linted as if an entry)
      const short = Uint32Array.from(merged.carried);
      short[1]! -= 1;
      expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: merged.entries.bytes }), { ca: profile, previousNumber: 4n, carried: { ...kept, runs: short } }))).not.toBe('passed');
      // Runs that claim 1 and 3, then a new entry 2 spliced after them (an order bug in the merge)
      const three = sorted([1, 3, 5]);
      const keptThree = previousWithOffsets(three);
      const spliced = Buffer.concat([sorted([1]).bytes, sorted([3]).bytes, sorted([2]).bytes]);
      const runs = Uint32Array.from([0, three.offsets[2]!, 0]);
      expect(ruleOf(() => lintCrl(buildCrl({ ...base, revoked: spliced }), { ca: profile, previousNumber: 4n, carried: { ...keptThree, runs } }))).toBe('crl.entries.order');
    });
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

    // An incremental publication whose carried entries are not the bytes linted before (a memory
    // or merge fault, simulated by the build seam): LINT_FAILED (crl.entries.carried), nothing stored.
    const storage = createStorage(database.db);
    let corrupt = false;
    const incremental = createPublishCrl({
      storage,
      clock: t.clock,
      authority,
      settings: { validityHours: 168, distributionPointUrl: crlDistributionPointUrl(t.config), fullRebuildMs: 3_600_000 },
      prepare: (input) => {
        if (!corrupt || input.revoked.length === 0) return prepareCrl(input);
        const revoked = Buffer.from(input.revoked);
        // The last octet of the first certificate's serial (an entry carried over, not the new one): still parseable, not the same.
        const at = revoked.indexOf(Buffer.from(carriedSerial.padStart(carriedSerial.length + (carriedSerial.length % 2), '0'), 'hex'));
        expect(at).toBeGreaterThan(0);
        revoked[at + Math.ceil(carriedSerial.length / 2) - 1] ^= 0x01;
        return prepareCrl({ ...input, revoked });
      },
    });
    const certs: number[] = [];
    let carriedSerial = '';
    for (const device of ['LINT-1', 'LINT-2']) {
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: device })).status).toBe(201);
      const res = await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 });
      certs.push(res.json.certificate.id as number);
      carriedSerial ||= res.json.certificate.serial_number as string;
    }
    await t.service.crl.publisher!.idle();
    // Only this publisher publishes from here: the revocations' own statements, no notification.
    await database.db.asTenant('acme', (tx) => markRevoked(tx, certs[0]!, 'keyCompromise', t.clock.now()));
    expect(await incremental({ incremental: true })).toMatchObject({ published: true, crl: { build: { mode: 'full' } } }); // fills memory
    await database.db.asTenant('acme', (tx) => markRevoked(tx, certs[1]!, 'keyCompromise', t.clock.now()));
    const stored = await database.db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId));
    corrupt = true;
    const carriedError = await incremental({ incremental: true }).catch((e: unknown) => e);
    expect((carriedError as AppError).code).toBe('LINT_FAILED');
    expect((carriedError as AppError).details?.rule).toBe('crl.entries.carried');
    expect(await database.db.asOperator((tx) => readCrlInfo(tx, authority.issuerKeyId))).toEqual(stored);
    // Memory was dropped with the failure: the next run reads everything and publishes both.
    corrupt = false;
    const next = await incremental({ incremental: true });
    expect(next).toMatchObject({ published: true, crl: { entries: 2, build: { mode: 'full' } } });

    // The real encoder publishes and the lint passes it.
    const good = createPublishCrl({ storage: createStorage(database.db), clock: t.clock, authority, settings: { validityHours: 168, distributionPointUrl: crlDistributionPointUrl(t.config) } });
    const result = await good();
    expect(result.published).toBe(true);
  });
});
