/**
 * Incremental CRL publication (src/crl/incremental-entries.ts, src/crl/publish-crl.ts):
 * - the merge is byte-identical to encoding every entry afresh, over seeded random sequences of
 *   revocations, replacements and expirations (property-style; the seed is printed on failure);
 * - on PGlite and Postgres, revocations through the API are published incrementally, and a full
 *   read of the database gives the very same entries;
 * - an out-of-band change (a row changed without a pending mark) is caught by the periodic
 *   self-check: CRL_INCREMENTAL_MISMATCH is raised and the full read is published;
 * - two publishers on one database (an API-side and a worker-side replica) interleaving keep
 *   numbers strictly increasing and lose nothing.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRevokedEntriesEncoder, entriesWithoutExtensions, prepareCrl, revokedList, type RevokedEntry, type SortedEntries } from '../src/crl/build-crl.ts';
import { fileEntriesOf, fileSpaceOf, mergeEntries, mergeFileEntries, noEntries, retentionEnded, spaceOf, type FileSpace, type MergeSpace } from '../src/crl/incremental-entries.ts';
import { createPublishCrl, crlAuthorityFor, CRL_INCREMENTAL_MISMATCH_ALERT, loadStoredFileCrl, type PublishCrlResult } from '../src/crl/publish-crl.ts';
import { DAY_MS, createManualClock } from '../src/domain/clock.ts';
import { crlPemToDer, verifyCrl } from '../src/crl/verify-crl.ts';
import { crlEntries } from '../src/crl/crl-entries.ts';
import type { CrlFileSync, CrlForFile } from '../src/crl/crl-file-sync.ts';
import { createStorage } from '../src/storage/repositories.ts';
import { markRevoked } from '../src/storage/repos/certificates-repo.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

/** mulberry32: a small seeded PRNG. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function encodeAll(entries: Iterable<RevokedEntry>): SortedEntries {
  const enc = createRevokedEntriesEncoder({ times: true });
  for (const e of entries) enc.add(e);
  return enc.finishSorted();
}

const REASONS = [0, 1, 3, 4, 5, 9];

describe('mergeEntries', () => {
  it('is byte-identical to encoding every entry afresh, over random revocations, replacements and expirations', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const random = prng(seed);
      const serial = () => {
        // Mixed lengths (1 to 20 octets, some with the high bit set: a leading zero octet) so order by length matters.
        const octets = 1 + Math.floor(random() * (random() < 0.2 ? 3 : 20));
        let hex = '';
        for (let i = 0; i < octets; i++) hex += Math.floor(random() * 256).toString(16).padStart(2, '0');
        return hex.replace(/^0+(?=.)/, '');
      };
      const model = new Map<string, RevokedEntry>();
      const key = (hex: string) => hex.replace(/^0+(?=.)/, '');
      let state: SortedEntries = noEntries();
      let space: MergeSpace | null = null;
      let merged = false;
      let now = 1_700_000_000;
      let previousThisUpdate: number | null = null;
      // The broker file's list as the publisher keeps it: a copy (the file CRL's own bytes) and its offsets; the memory alternates.
      let fileState: { list: Uint8Array; offsets: Uint32Array } = { list: new Uint8Array(0), offsets: new Uint32Array(0) };
      let fileSpace: FileSpace | null = null;
      let fileSpare: FileSpace | null = null;
      for (let step = 0; step < 25; step++) {
        // Entries whose retention ended leave the model as the database read would leave them out.
        if (previousThisUpdate !== null) {
          for (const [k, e] of model) {
            if (retentionEnded(Math.floor(e.revokedAt.getTime() / 1000), e.notAfterMs === Infinity ? Infinity : Math.floor(e.notAfterMs! / 1000), previousThisUpdate)) model.delete(k);
          }
        }
        const added: RevokedEntry[] = [];
        const count = random() < 0.2 ? 0 : Math.floor(random() * (step === 0 ? 300 : 25));
        for (let i = 0; i < count; i++) {
          const replace = model.size > 0 && random() < 0.1;
          const hex = replace ? [...model.keys()][Math.floor(random() * model.size)] : serial();
          if (!replace && model.has(key(hex))) continue;
          if (added.some((a) => key(a.serialHex) === key(hex))) continue;
          const expiresSoon = random() < 0.3;
          const entry: RevokedEntry = {
            serialHex: random() < 0.1 ? `00${hex}` : hex, // leading zeros in the input are allowed
            revokedAt: new Date((now - Math.floor(random() * 5000)) * 1000 + Math.floor(random() * 1000)),
            reasonCode: REASONS[Math.floor(random() * REASONS.length)],
            notAfterMs: random() < 0.05 ? Infinity : (now + (expiresSoon ? Math.floor(random() * 400) : 100_000)) * 1000 + 123,
          };
          added.push(entry);
          model.set(key(hex), entry);
        }
        const result = mergeEntries(state, encodeAll(added), previousThisUpdate, space);
        const expected = encodeAll(model.values());
        const context = `seed ${seed}, step ${step}`;
        expect(result.entries.bytes.equals(expected.bytes), context).toBe(true);
        expect([...result.entries.offsets], context).toEqual([...expected.offsets]);
        expect([...result.entries.revokedAt], context).toEqual([...expected.revokedAt]);
        expect([...result.entries.notAfter], context).toEqual([...expected.notAfter]);
        // The file variant's entries, merged from the previous file list: those of every entry stripped afresh.
        const file = mergeFileEntries(state, fileState, result, fileSpare);
        const strippedAfresh = fileEntriesOf(expected.bytes, expected.offsets.length);
        expect(file.entries.bytes.equals(entriesWithoutExtensions(expected.bytes)), context).toBe(true);
        expect(file.entries.bytes.equals(strippedAfresh.bytes), context).toBe(true);
        expect([...file.entries.offsets], context).toEqual([...strippedAfresh.offsets]);
        for (let r = 0; r < file.carried.length; r += 3) {
          const [at, end, from] = [file.carried[r], file.carried[r + 1], file.carried[r + 2]];
          expect(Buffer.from(file.entries.bytes.subarray(at, end)).equals(Buffer.from(fileState.list.subarray(from, from + end - at))), context).toBe(true);
        }
        // No entry of the file list has extensions: each is SEQUENCE { serial, revocationDate } only.
        for (const at of file.entries.offsets) {
          const serialLength = file.entries.bytes[at + 3];
          expect(file.entries.bytes[at + 1], context).toBe(2 + serialLength + 2 + file.entries.bytes[at + 4 + serialLength + 1]);
        }
        fileSpare = fileSpace;
        fileSpace = fileSpaceOf(file.entries);
        fileState = { list: Uint8Array.from(file.entries.bytes), offsets: file.entries.offsets };
        // As publish-crl does: the list replaced becomes the next merge's memory once it came from a merge.
        space = merged ? spaceOf(state) : space;
        state = result.entries;
        merged = true;
        previousThisUpdate = now;
        now += 100 + Math.floor(random() * 300);
      }
    }
  });

  it('never writes into the list it merges from', () => {
    const a = encodeAll([{ serialHex: '05', revokedAt: new Date(0), reasonCode: 0, notAfterMs: Infinity }]);
    const before = Buffer.from(a.bytes);
    const r = mergeEntries(a, encodeAll([{ serialHex: '01', revokedAt: new Date(0), reasonCode: 1, notAfterMs: Infinity }]), null, spaceOf(a));
    expect(a.bytes.equals(before)).toBe(true);
    expect(r.entries.offsets.length).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(DRIVERS)('incremental CRL publication on %s', (kind) => {
  let database: TestDatabase;
  let t: TestService;

  async function issue(device = 'DEVICE-001') {
    const res = await t.call('acme', 'POST', `/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: 30 });
    expect(res.status).toBe(201);
    return { id: res.json.certificate.id as number, serial: res.json.certificate.serial_number as string };
  }
  /**
   * The revocation's own statement (certificates-repo markRevoked: the row and its pending mark),
   * without telling the service's publisher: only the publishers under test build CRLs here.
   */
  async function revoke(id: number, reason = 'keyCompromise') {
    const revoked = await database.db.asTenant('acme', (tx) => markRevoked(tx, id, reason, t.clock.now()));
    expect(revoked?.status).toBe('REVOKED');
  }
  const authority = () => crlAuthorityFor(t.service.ca.ca!);
  const storage = () => createStorage(database.db);
  const settings = (fullRebuildMs: number) => ({ validityHours: 24, distributionPointUrl: t.service.crl.distributionPointUrl, fullRebuildMs });
  const entriesOf = (der: Buffer) => verifyCrl(der, { caPublicKey: t.service.ca.ca!.publicKey, now: t.clock.now() });
  const published = (r: PublishCrlResult) => {
    if (!r.published) throw new Error('expected a new CRL');
    return r.crl;
  };

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    t = await startTestService(database, { clock: createManualClock(new Date(Date.now() - 7 * DAY_MS)), overrides: { crl: { refreshTimer: false } } });
    t.clock.set(new Date());
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });
  beforeEach(async () => {
    await t.service.crl.publisher!.idle();
    await database.reset();
    expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'DEVICE-001' })).status).toBe(201);
    await t.service.crl.publisher!.publishNow();
  });

  it('publishes revocations by merging them into the entries in memory; a full read gives the very same entries', async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    const first = published(await publish({ incremental: true }));
    expect(first.build.mode).toBe('full'); // nothing in memory yet
    const certs = [];
    for (let i = 0; i < 6; i++) certs.push(await issue());
    let last = first.crlNumber;
    for (const [i, cert] of certs.entries()) {
      await revoke(cert.id, i % 2 ? 'superseded' : 'keyCompromise');
      clock.advance(1000);
      const crl = published(await publish({ incremental: true }));
      expect(crl.build).toMatchObject({ mode: 'incremental', inserted: 1, mismatch: false });
      expect(crl.crlNumber > last).toBe(true);
      last = crl.crlNumber;
      expect(entriesOf(crl.der).entryCount).toBe(i + 1);
      // the full read from the database, now: the same entry bytes (the revokedCertificates field of the file variant)
      const full = published(await createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) })({}));
      expect(full.build.mode).toBe('full');
      expect(revokedField(full.fileDer).equals(revokedField(crl.fileDer))).toBe(true);
      expect(revokedField(full.der).equals(revokedField(crl.der))).toBe(true);
      // the served CRL keeps each entry's reason code, the broker file's entries have none (the same entries otherwise)
      expect(reasonsOf(crl.der)).toEqual(certs.slice(0, i + 1).map((_, k) => (k % 2 ? 'superseded' : 'keyCompromise')).sort());
      expect(reasonsOf(crl.fileDer)).toEqual(Array(i + 1).fill('unspecified'));
      expect(revokedField(crl.fileDer).equals(revokedField(crl.der))).toBe(false);
      expect(listContents(crl.fileDer).equals(entriesWithoutExtensions(listContents(crl.der)))).toBe(true);
      // the other publisher stored since: the first one's memory no longer stands for the stored CRL
      clock.advance(1000);
      const after = published(await publish({ incremental: true }));
      expect(after.build.mode).toBe('full');
      last = after.crlNumber;
    }
  });

  it('the served variant is built only once the broker file is in place (its build cannot hold up the file)', async () => {
    const clock = createManualClock(t.clock.now());
    const steps: string[] = [];
    // A file stage that takes a while after the verification (a slow disk): the served variant must wait for it.
    const file = {
      claimedNumber: async () => null,
      sync: async (crl: CrlForFile) => {
        steps.push('file write');
        if (typeof crl.verified === 'object') await crl.verified;
        await new Promise((resolve) => setTimeout(resolve, 30));
        steps.push('file in place');
        crl.onInPlace?.();
        return { file: 'written' as const, fileNumber: crl.crlNumber, reloaded: null };
      },
    } as unknown as CrlFileSync;
    const prepare: typeof prepareCrl = (input, space) => {
      steps.push(input.distributionPointUrl ? 'served build' : 'file build');
      return prepareCrl(input, space);
    };
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000), file, prepare });
    await revoke((await issue()).id, 'keyCompromise');
    const crl = published(await publish({ incremental: true }));
    expect(steps).toEqual(['file build', 'file write', 'file in place', 'served build']);
    expect(entriesOf(crl.der).entryCount).toBe(1);
  });

  it('consecutive incremental publications: the file list is merged from the previous one each time, both variants equal a full read', async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    published(await publish({ incremental: true })); // full: fills memory
    const certs = [];
    for (let i = 0; i < 8; i++) certs.push(await issue());
    let last = null;
    for (const [i, cert] of certs.entries()) {
      await revoke(cert.id, ['keyCompromise', 'superseded', 'lost in the field', 'cessationOfOperation'][i % 4]);
      clock.advance(1000);
      last = published(await publish({ incremental: true }));
      expect(last.build).toMatchObject({ mode: 'incremental', inserted: 1 });
      expect(reasonsOf(last.fileDer)).toEqual(Array(i + 1).fill('unspecified'));
      expect(listContents(last.fileDer).equals(entriesWithoutExtensions(listContents(last.der)))).toBe(true);
    }
    clock.advance(1000);
    const full = published(await createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(0) })({}));
    expect(revokedField(full.der).equals(revokedField(last!.der))).toBe(true);
    expect(revokedField(full.fileDer).equals(revokedField(last!.fileDer))).toBe(true);
  });

  it("the broker file's CRL is built in reused memory: each result's fileDer is still that CRL, read at once or publications later", async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    const results = [published(await publish({ incremental: true }))];
    // What another replica gets for each: the stored CRL's file variant (made from the served one and the file signature).
    const stored = [(await loadStoredFileCrl(storage(), authority().issuerKeyId))!];
    const readAtOnce = new Map<number, Buffer>([[0, Buffer.from(results[0].fileDer)]]);
    for (let i = 1; i <= 5; i++) {
      await revoke((await issue()).id);
      clock.advance(1000);
      const crl = published(await publish({ incremental: true }));
      expect(crl.build.mode).toBe('incremental');
      results.push(crl);
      stored.push((await loadStoredFileCrl(storage(), authority().issuerKeyId))!);
      if (i % 2 === 0) readAtOnce.set(i, Buffer.from(crl.fileDer)); // the others are first read below, after their memory was reused
    }
    for (const [i, crl] of results.entries()) {
      expect(crl.fileDer.equals(stored[i])).toBe(true);
      if (readAtOnce.has(i)) expect(crl.fileDer.equals(readAtOnce.get(i)!)).toBe(true);
      expect(entriesOf(crl.fileDer)).toMatchObject({ crlNumber: crl.crlNumber, entryCount: i });
      expect(listContents(crl.fileDer).equals(entriesWithoutExtensions(listContents(crl.der)))).toBe(true);
    }
  });

  it('an out-of-band change is caught by the periodic self-check: CRL_INCREMENTAL_MISMATCH, and the full read is published', async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(60_000) });
    const a = await issue();
    const b = await issue();
    await revoke(a.id);
    published(await publish({ incremental: true })); // full: fills memory
    // A revocation that reaches the database without a pending mark naming it (e.g. a bulk change made by hand).
    await database.db.asOperator((tx) =>
      tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'superseded' WHERE id = $1`, [b.id]),
    );
    clock.advance(1000);
    const blind = published(await publish({ incremental: true }));
    expect(blind.build.mode).toBe('incremental');
    expect(entriesOf(blind.der).entryCount).toBe(1); // memory does not know b
    clock.advance(60_000); // the self-check is due
    const checked = published(await publish({ incremental: true }));
    expect(checked.build).toMatchObject({ mode: 'checked', mismatch: true });
    expect(entriesOf(checked.der).entryCount).toBe(2);
    const alerts = (await database.db.asOperator((tx) => tx.query<{ alert_type: string; status: string; details: Record<string, unknown> }>(
      `SELECT alert_type, status, details FROM fleet_alert WHERE alert_type = $1`, [CRL_INCREMENTAL_MISMATCH_ALERT]))).rows;
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ status: 'OPEN', details: { in_memory: 1, in_database: 2 } });
    // and the next check, with memory right again, finds no difference
    clock.advance(60_000);
    const again = published(await publish({ incremental: true }));
    expect(again.build).toMatchObject({ mode: 'checked', mismatch: false });
  });

  it('a pending mark naming no serial (restore reconcile, rebuild request) makes the next publication read everything', async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    published(await publish({ incremental: true }));
    await storage().asOperator(({ crl }) => crl.requestCrlRebuild(authority().issuerLabel));
    clock.advance(1000);
    expect(published(await publish({ incremental: true })).build.mode).toBe('full');
    clock.advance(1000);
    expect(published(await publish({ incremental: true })).build.mode).toBe('incremental');
  });

  it('expired entries leave the CRL incrementally as a full read would leave them out', async () => {
    const clock = createManualClock(t.clock.now());
    const publish = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000 * 24 * 30) });
    const short = await issue();
    const long = await issue();
    await revoke(short.id);
    await revoke(long.id);
    // short's certificate expires in an hour
    await database.db.asOperator((tx) => tx.query(`UPDATE device_certificates SET not_after = $2 WHERE id = $1`, [short.id, new Date(clock.now().getTime() + 3_600_000)]));
    expect(entriesOf(published(await publish({ incremental: true })).der).entryCount).toBe(2);
    clock.advance(2 * 3_600_000);
    expect(entriesOf(published(await publish({ incremental: true })).der).entryCount).toBe(2); // the first CRL after notAfter still lists it
    clock.advance(1000);
    const gone = published(await publish({ incremental: true }));
    expect(gone.build).toMatchObject({ mode: 'incremental', dropped: 1 });
    expect(entriesOf(gone.der).entryCount).toBe(1);
    const full = published(await createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(0) })({}));
    expect(revokedField(full.fileDer).equals(revokedField(gone.fileDer))).toBe(true);
    expect(revokedField(full.der).equals(revokedField(gone.der))).toBe(true);
  });

  it('two publishers (API side and worker side) interleaving with revocations: numbers strictly increase, nothing is lost', async () => {
    const clock = createManualClock(t.clock.now());
    const api = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    const worker = createPublishCrl({ storage: storage(), clock, authority: authority(), settings: settings(3_600_000) });
    const revoked: string[] = [];
    let last = 0n;
    const random = prng(7);
    for (let round = 0; round < 8; round++) {
      const n = 1 + Math.floor(random() * 3);
      for (let i = 0; i < n; i++) {
        const c = await issue();
        await revoke(c.id);
        revoked.push(c.serial);
      }
      clock.advance(random() < 0.5 ? 0 : 1000); // same second too: numbers still go up
      // Both at once: they queue on the crl_state row lock.
      const [x, y] = await Promise.all([api({ incremental: true }), worker({ incremental: true })]);
      for (const r of [x, y].map(published).sort((p, q) => (p.crlNumber < q.crlNumber ? -1 : 1))) {
        expect(r.crlNumber > last).toBe(true);
        last = r.crlNumber;
      }
      const newest = [x, y].map(published).reduce((p, q) => (p.crlNumber > q.crlNumber ? p : q));
      const listed = entriesOf(newest.der);
      expect(listed.entryCount).toBe(revoked.length);
    }
    // The stored CRL lists every revocation, as the broker file does.
    await t.service.crl.publisher!.publishNow();
    const file = crlPemToDer(readFileSync(t.config.crlOutputPath, 'latin1'));
    expect(entriesOf(file).entryCount).toBe(revoked.length);
  });
});

/** The revokedCertificates contents (the entries' DER, concatenated). */
function listContents(der: Buffer): Buffer {
  const list = revokedList(der);
  return list ? der.subarray(list.valueStart, list.end) : Buffer.alloc(0);
}

/** The reasons of a CRL's entries, sorted (crl-entries.ts reads them). */
const reasonsOf = (der: Buffer) => [...crlEntries(der)].map((e) => e.reason).sort();

/** The revokedCertificates field of a CRL (TLV bytes), empty when absent. */
function revokedField(der: Buffer): Buffer {
  // CertificateList → tbsCertList → fields: version, signature, issuer, thisUpdate, nextUpdate, [revokedCertificates], [0] extensions
  const read = (at: number) => {
    let len = der[at + 1];
    let body = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[body + i];
      body += n;
    }
    return { tag: der[at], body, end: body + len };
  };
  const tbs = read(read(0).body);
  let at = tbs.body;
  for (let i = 0; i < 5; i++) at = read(at).end;
  const field = read(at);
  return field.tag === 0x30 ? der.subarray(at, field.end) : Buffer.alloc(0);
}
