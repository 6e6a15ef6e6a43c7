/**
 * The CRL read must not depend on table statistics nor on the visibility map. Right after a bulk
 * insert or a bulk revocation, before ANALYZE or VACUUM (autovacuum off on the table), the planner
 * believes the table is nearly empty; left alone it planned each keyset batch as a bitmap scan plus
 * a sort of every remaining row (a minute for 1M rows), and an ordered index walk reads the heap
 * row by row in random order (12 s for 1M). The read is one statement: a bitmap scan of the CRL's
 * partial index, the heap read once in physical order, no Sort in the database (the rows are
 * ordered once in memory, by the CRL's entries encoder), no per-batch recursion, no sequential scan of the whole table. The plan
 * shape is asserted (wall time is the bench's job: bench/crl-publish.bench.ts), at a size that runs
 * fast, on both drivers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createRevokedEntriesEncoder } from '../src/crl/build-crl.ts';
import { explainRevokedEntriesRead, explainRevokedEntryRead, forEachRevokedCertificate, forEachRevokedEntry } from '../src/storage/repos/crl-repo.ts';
import { insertRevokedCertificates } from './support/bulk-revoked.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';

const ISSUER = 'Plan Test Device CA';
const COUNT = 5_000;

function expectOneHeapOrderRead(plan: string) {
  const lines = plan.split('\n').map((line) => line.trim().replace(/^->\s*/, ''));
  expect(lines[0]).toMatch(/^Bitmap Heap Scan on device_certificates\b/);
  expect(lines.filter((line) => /^Bitmap Index Scan on device_certificates_crl\b/.test(line))).toHaveLength(1);
  expect(lines.filter((line) => / on /.test(line))).toHaveLength(2); // those two scans, nothing else
  expect(plan).not.toMatch(/\bSort\b|Recursive|CTE|Loop|Limit|Gather|Index (Only )?Scan using|Seq Scan/);
}

describe.each(DRIVERS)('CRL read plan without statistics on %s', (kind) => {
  let database: TestDatabase | null = null;
  afterEach(async () => {
    await database?.close();
    database = null;
  });

  async function freshTable() {
    database = await createTestDatabase(kind);
    await database.driver.transaction((tx) => tx.query('ALTER TABLE device_certificates SET (autovacuum_enabled = false)'));
    return database;
  }

  /** The plan as it is, and with costs tilted against index scans: it must not be a cost decision that could flip. */
  async function expectPlans(db: TestDatabase, previousThisUpdate: Date | null) {
    const scope = { issuer: ISSUER, previousThisUpdate };
    expectOneHeapOrderRead(await db.db.asOperator((tx) => explainRevokedEntriesRead(tx, scope)));
    const tilted = await db.db.asOperator(async (tx) => {
      await tx.exec('SET LOCAL random_page_cost = 10000; SET LOCAL cpu_index_tuple_cost = 100; SET LOCAL seq_page_cost = 0.0001; SET LOCAL cpu_tuple_cost = 0');
      return explainRevokedEntriesRead(tx, scope);
    });
    expectOneHeapOrderRead(tilted);
    expectOneHeapOrderRead(await db.db.asOperator((tx) => explainRevokedEntryRead(tx, scope)));
    expectOneHeapOrderRead(
      await db.db.asOperator(async (tx) => {
        await tx.exec('SET LOCAL random_page_cost = 10000; SET LOCAL cpu_index_tuple_cost = 100; SET LOCAL seq_page_cost = 0.0001; SET LOCAL cpu_tuple_cost = 0');
        return explainRevokedEntryRead(tx, scope);
      }),
    );
  }

  /** What the planner knows: nothing (never analyzed nor vacuumed, no page all-visible). */
  async function expectNoStatistics(db: TestDatabase) {
    const { rows } = await db.driver.transaction((tx) =>
      tx.query<{ reltuples: number; relallvisible: number; stats: number }>(
        `SELECT reltuples::float8 AS reltuples, relallvisible, (SELECT count(*)::int FROM pg_statistic WHERE starelid = c.oid) AS stats
         FROM pg_class c WHERE relname = 'device_certificates'`,
      ),
    );
    expect(rows[0]).toEqual({ reltuples: -1, relallvisible: 0, stats: 0 });
  }

  /** Every row read once, through the entries encoder as the publication does: the serials of its output, in its order. */
  async function readAll(db: TestDatabase) {
    const encoder = createRevokedEntriesEncoder();
    const read = new Set<string>();
    await db.db.asOperator((tx) =>
      forEachRevokedCertificate(tx, { issuer: ISSUER, previousThisUpdate: null }, (serialHex, revokedAtMs) => {
        read.add(serialHex);
        encoder.add({ serialHex, revokedAt: new Date(revokedAtMs), reasonCode: 0 });
      }),
    );
    const der = encoder.finish();
    const serials: string[] = [];
    for (let at = 0; at < der.length; at += 2 + der[at + 1]) serials.push(der.subarray(at + 4, at + 4 + der[at + 3]).toString('hex').replace(/^00/, ''));
    expect(new Set(serials)).toEqual(read);
    // The build's read: the rows' stored entries (migration 035), the same entries in the same order.
    const built = createRevokedEntriesEncoder();
    await db.db.asOperator((tx) =>
      forEachRevokedEntry(
        tx,
        { issuer: ISSUER, previousThisUpdate: null },
        (der, start, end, revokedAt, notAfter) => built.addEncoded(der, start, end, revokedAt, notAfter),
        (serialHex, revokedAtMs) => built.add({ serialHex, revokedAt: new Date(revokedAtMs), reasonCode: 0 }),
      ),
    );
    const builtDer = built.finish();
    const builtSerials: string[] = [];
    for (let at = 0; at < builtDer.length; at += 2 + builtDer[at + 1]) builtSerials.push(builtDer.subarray(at + 4, at + 4 + builtDer[at + 3]).toString('hex').replace(/^00/, ''));
    expect(builtSerials).toEqual(serials);
    return serials;
  }

  const numericOrder = (serials: string[]) => serials.every((s, i) => i === 0 || BigInt('0x' + serials[i - 1]) < BigInt('0x' + s));

  it('revoked rows inserted in one statement, never analyzed nor vacuumed: one heap-order read, encoded in serial order', async () => {
    const db = await freshTable();
    await insertRevokedCertificates(db.driver, { count: COUNT, now: new Date(), issuer: ISSUER });
    await expectNoStatistics(db);
    await expectPlans(db, new Date());
    const serials = await readAll(db);
    expect(serials.length).toBe(COUNT);
    expect(numericOrder(serials)).toBe(true);
  });

  it('certificates revoked by one UPDATE, never analyzed nor vacuumed: one heap-order read, encoded in serial order', async () => {
    const db = await freshTable();
    await insertRevokedCertificates(db.driver, { count: COUNT, now: new Date(), issuer: ISSUER, status: 'ACTIVE' });
    await db.driver.transaction((tx) =>
      tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'keyCompromise' WHERE issuer = $1`, [ISSUER]),
    );
    await expectNoStatistics(db);
    await expectPlans(db, null);
    const serials = await readAll(db);
    expect(serials.length).toBe(COUNT);
    expect(numericOrder(serials)).toBe(true);
  });
});
