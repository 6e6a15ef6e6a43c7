/**
 * Each revoked certificate keeps its CRL entry DER-encoded (migration 035: a trigger fills
 * device_certificates.crl_entry in the revoking statement), so a full CRL build reads and sorts
 * bytes instead of encoding a million rows. Those bytes must be exactly what the application's
 * encoder makes of the same row (serial, revocation time, reason text → reasonCode as
 * revocation-reasons.ts maps it, removeFromCRL as unspecified in a full CRL); a row the SQL does
 * not encode (revoked before the migration, non-ASCII reason, a year outside UTCTime) is handed
 * over as text and encoded by the application. On both drivers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { REVOCATION_REASONS, reasonCodeFor } from '../src/domain/revocation-reasons.ts';
import { backfillCrlEntries, explainCrlEntryBackfill, forEachRevokedCertificate, forEachRevokedEntry, walkEncodedEntries } from '../src/storage/repos/crl-repo.ts';
import { createBackfillCrlEntries } from '../src/app/backfill-crl-entries.ts';
import { createStorage } from '../src/storage/repositories.ts';
import type { Queryable } from '../src/storage/driver.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';

const ISSUER = 'Entry DER Test CA';
const scope = { issuer: ISSUER, previousThisUpdate: null };

const REASONS: (string | null)[] = [
  ...Object.keys(REVOCATION_REASONS),
  'rotated', 'rotation', 'compromised', 'decommissioned',
  'Key Compromise', 'key_compromise', ' KEY-COMPROMISE ', 'ROTATED', 'cessation of\noperation', 'superseded\t',
  'lost in\nthe field', 'free text', '', null, "it's", 'removeFromCRL', 'unknownReason',
  'Schlüssel verloren', 'key\u00a0compromise', // not plain ASCII: encoded by the application
];
const SERIALS = ['1', '0', '7f', '80', 'ff', '0081', '00ff01', 'ABCDEF', 'aBc', '4' + '0'.repeat(39), 'f'.repeat(40), '0'.repeat(10) + '1234', '123456789abcdef'];
const TIMES = ['1950-01-01T00:00:00Z', '1999-12-31T23:59:59.999Z', '2026-12-07T18:00:00.5Z', '2049-12-31T23:59:59Z', '2050-01-01T00:00:00Z', '1949-12-31T23:59:59Z', '2000-02-29T12:34:56Z'];

async function insertRows(tx: Queryable) {
  await tx.query(`INSERT INTO device_registry (tenant_id, device_id, created_at, updated_at) VALUES ('t', 'd', now(), now())`);
  let i = 0;
  const rows: { serial: string; at: string; reason: string | null; status: string }[] = [];
  for (const reason of REASONS) rows.push({ serial: (0x1000 + i++).toString(16), at: TIMES[i % TIMES.length]!, reason, status: 'REVOKED' });
  for (const serial of SERIALS) rows.push({ serial, at: TIMES[i++ % TIMES.length]!, reason: REASONS[i % REASONS.length]!, status: 'REVOKED' });
  for (const at of TIMES) rows.push({ serial: (0x2000 + i++).toString(16), at, reason: 'keyCompromise', status: 'REVOKED' });
  rows.push({ serial: 'ac7e', at: TIMES[2]!, reason: null, status: 'ACTIVE' });
  for (const [k, r] of rows.entries()) {
    await tx.query(
      `INSERT INTO device_certificates (tenant_id, device_id, cert_pem, fingerprint_sha256, common_name, issuer, serial_number, key_type, status, not_before, not_after, revoked_at, revoked_reason, created_at, updated_at)
       VALUES ('t', 'd', '-', $1, 't/d', $2, $3, 'ec-p256', $4, now() - interval '1 day', now() + interval '1 year', CASE WHEN $4 = 'REVOKED' THEN $5::timestamptz END, $6, now(), now())`,
      [`fp${k}`, ISSUER, r.serial, r.status, r.at, r.reason],
    );
  }
  return rows;
}

/** The CRL entries the application encodes from the rows as texts (publish-crl.ts's feeder). */
async function applicationEntries(tx: Queryable) {
  const encoder = createRevokedEntriesEncoder({ times: true });
  await forEachRevokedCertificate(tx, scope, (serialHex, revokedAtMs, reason, notAfterMs) => {
    const code = reasonCodeFor(reason);
    encoder.add({ serialHex, revokedAt: new Date(revokedAtMs), reasonCode: code === REVOCATION_REASONS.removeFromCRL ? 0 : code, notAfterMs });
  });
  return encoder.finishSorted();
}

/** The same through the build's read: stored entries copied, the others encoded. */
async function buildEntries(tx: Queryable) {
  const encoder = createRevokedEntriesEncoder({ times: true });
  let encoded = 0;
  let texts = 0;
  await forEachRevokedEntry(
    tx,
    scope,
    (der, start, end, revokedAt, notAfter) => {
      encoded++;
      encoder.addEncoded(der, start, end, revokedAt, notAfter);
    },
    (serialHex, revokedAtMs, reason, notAfterMs) => {
      texts++;
      const code = reasonCodeFor(reason);
      encoder.add({ serialHex, revokedAt: new Date(revokedAtMs), reasonCode: code === REVOCATION_REASONS.removeFromCRL ? 0 : code, notAfterMs });
    },
  );
  return { sorted: encoder.finishSorted(), encoded, texts };
}

describe.each(DRIVERS)('stored CRL entries (migration 035) on %s', (kind) => {
  let database: TestDatabase | null = null;
  afterEach(async () => {
    await database?.close();
    database = null;
  });

  it('the trigger encodes each revoked row exactly as the application does; the rest are read as texts', async () => {
    database = await createTestDatabase(kind);
    await database.driver.transaction(async (tx) => {
      const rows = await insertRows(tx);
      const revoked = rows.filter((r) => r.status === 'REVOKED').length;
      const { rows: stored } = await tx.query<{ n: number; missing: number }>(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE crl_entry IS NULL)::int AS missing FROM device_certificates WHERE issuer = $1 AND status = 'REVOKED'`,
        [ISSUER],
      );
      // Not encoded in SQL: the two non-ASCII reasons, and the years outside 1950-2049 (each time appears in several rows).
      expect(stored[0]!.n).toBe(revoked);
      const { rows: active } = await tx.query<{ e: unknown }>(`SELECT crl_entry AS e FROM device_certificates WHERE status = 'ACTIVE'`);
      expect(active[0]!.e).toBeNull();

      const expected = await applicationEntries(tx);
      const built = await buildEntries(tx);
      expect(built.encoded + built.texts).toBe(revoked);
      expect(built.texts).toBe(stored[0]!.missing);
      expect(built.texts).toBeGreaterThan(0);
      expect(built.encoded).toBeGreaterThan(revoked / 2);
      expect(Buffer.from(built.sorted.bytes).equals(expected.bytes)).toBe(true);
      expect([...built.sorted.revokedAt]).toEqual([...expected.revokedAt]);
      expect([...built.sorted.notAfter]).toEqual([...expected.notAfter]);
    });
  });

  it('a revocation, a changed reason and a row revoked before the migration (no stored entry) all read right', async () => {
    database = await createTestDatabase(kind);
    await database.driver.transaction(async (tx) => {
      await insertRows(tx);
      await tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'superseded' WHERE status = 'ACTIVE'`);
      await tx.query(`UPDATE device_certificates SET revoked_reason = 'cACompromise' WHERE serial_number = '1'`);
      // As if revoked before migration 035: no stored entry.
      await tx.exec('ALTER TABLE device_certificates DISABLE TRIGGER device_certificates_crl_entry');
      await tx.query(`UPDATE device_certificates SET crl_entry = NULL WHERE serial_number IN ('7f', '80', '1002')`);
      await tx.exec('ALTER TABLE device_certificates ENABLE TRIGGER device_certificates_crl_entry');
      // Nobody can store an entry of their own: the trigger makes it from the row.
      await tx.query(`UPDATE device_certificates SET crl_entry = '\\x3000'::bytea WHERE serial_number = '1001'`);
      const { rows } = await tx.query<{ ok: boolean }>(`SELECT crl_entry IS NOT DISTINCT FROM certfleet_crl_entry_der(serial_number, revoked_at, revoked_reason) AND crl_entry IS NOT NULL AS ok FROM device_certificates WHERE serial_number = '1001'`);
      expect(rows[0]!.ok).toBe(true);
      const expected = await applicationEntries(tx);
      const built = await buildEntries(tx);
      expect(Buffer.from(built.sorted.bytes).equals(expected.bytes)).toBe(true);
      expect([...built.sorted.notAfter]).toEqual([...expected.notAfter]);
    });
  });
});

describe.each(DRIVERS)('the stored-entry backfill (migration 036, the crl-entry-backfill task) on %s', (kind) => {
  let database: TestDatabase | null = null;
  afterEach(async () => {
    await database?.close();
    database = null;
  });

  const counts = (tx: Queryable) =>
    tx
      .query<{ missing: number; declined: number }>(
        `SELECT count(*) FILTER (WHERE crl_entry IS NULL)::int AS missing,
                count(*) FILTER (WHERE certfleet_crl_entry_der(serial_number, revoked_at, revoked_reason) IS NULL)::int AS declined
         FROM device_certificates WHERE status = 'REVOKED'`,
      )
      .then((r) => r.rows[0]!);

  it('fills the entries of rows revoked before migration 035 in batches, resumable and idempotent; the CRL entries read stay the same bytes', async () => {
    database = await createTestDatabase(kind);
    const db = database;
    await db.driver.transaction(async (tx) => {
      await insertRows(tx);
      // Every revoked row as if revoked before migration 035.
      await tx.exec('ALTER TABLE device_certificates DISABLE TRIGGER device_certificates_crl_entry');
      await tx.query(`UPDATE device_certificates SET crl_entry = NULL WHERE status = 'REVOKED'`);
      await tx.exec('ALTER TABLE device_certificates ENABLE TRIGGER device_certificates_crl_entry');
    });
    const before = await db.driver.transaction(counts);
    expect(before.declined).toBeGreaterThan(0);
    expect(before.missing).toBeGreaterThan(before.declined + 10);
    const expected = await db.db.asOperator(applicationEntries);
    expect((await db.db.asOperator(buildEntries)).encoded).toBe(0);

    // One batch, then a stop (a crash, a stop): the rows it filled stay filled.
    const first = await db.db.asOperator((tx) => backfillCrlEntries(tx, 0, 5));
    expect(first.scanned).toBe(5);
    expect(first.lastId).not.toBeNull();
    expect((await db.driver.transaction(counts)).missing).toBe(before.missing - first.filled);

    // The task from the start again: finds only the others, in batches of 7, until none is left.
    const run = await createBackfillCrlEntries({ storage: createStorage(db.db) }, { batch: 7 })();
    expect(run.filled).toBe(before.missing - before.declined - first.filled);
    expect(run.batches).toBeGreaterThan(1);
    expect(await db.driver.transaction(counts)).toEqual({ missing: before.declined, declined: before.declined });

    // Idempotent: a second run fills nothing (the declined rows are looked at and passed over).
    expect(await createBackfillCrlEntries({ storage: createStorage(db.db) }, { batch: 7 })()).toMatchObject({ filled: 0, scanned: before.declined });

    // The build's read now copies the stored entries: the same bytes and times as the application's encoding.
    const built = await db.db.asOperator(buildEntries);
    expect(built.texts).toBe(before.declined);
    expect(Buffer.from(built.sorted.bytes).equals(expected.bytes)).toBe(true);
    expect([...built.sorted.revokedAt]).toEqual([...expected.revokedAt]);
    expect([...built.sorted.notAfter]).toEqual([...expected.notAfter]);
  });

  it('finds its rows through the partial index, never by reading the table, without statistics', async () => {
    database = await createTestDatabase(kind);
    const plan = await database.db.asOperator(explainCrlEntryBackfill);
    expect(plan).toMatch(/Index Scan using device_certificates_crl_entry_missing on device_certificates/);
    expect(plan).not.toMatch(/Seq Scan|Sort|Bitmap/);
  });
});

describe('walkEncodedEntries', () => {
  it('rejects bytes that are neither a stored entry nor a text line', () => {
    expect(() => walkEncodedEntries(Uint8Array.from([0x31, 0x00]), () => undefined, () => undefined)).toThrow(/unexpected byte/);
    expect(() => walkEncodedEntries(Uint8Array.from([0x30, 0x05, 0x02]), () => undefined, () => undefined)).toThrow(/malformed/);
    expect(() => walkEncodedEntries(Uint8Array.from([0x00, 0, 0, 0, 9, 0x41]), () => undefined, () => undefined)).toThrow(/malformed/);
  });
});
