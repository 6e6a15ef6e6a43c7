/**
 * The CRL read must not depend on table statistics. Right after a bulk insert or a bulk
 * revocation, before ANALYZE (autovacuum off on the table), the planner believes the table is
 * nearly empty; left alone it plans each keyset batch as a bitmap scan plus a sort of every
 * remaining row (a minute for 1M rows). The read must walk the CRL index in order: no Sort, no
 * bitmap, no sequential scan of the table. The plan shape is asserted (wall time is the bench's job:
 * bench/crl-publish.bench.ts), at a size that runs fast, on both drivers.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { explainRevokedEntriesRead, forEachRevokedCertificate } from '../src/storage/repos/crl-repo.ts';
import { insertRevokedCertificates } from './support/bulk-revoked.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';

const ISSUER = 'Plan Test Device CA';
const COUNT = 5_000;

function expectOrderedIndexWalk(plan: string) {
  expect(plan).toMatch(/Index (Only )?Scan using device_certificates_crl on device_certificates/);
  expect(plan).not.toMatch(/\bSort\b/);
  expect(plan).not.toMatch(/Bitmap/);
  expect(plan).not.toMatch(/Seq Scan on device_certificates/);
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

  /** The plan as it is, and with costs tilted against index scans: the walk must not be a cost decision that could flip. */
  async function expectPlans(db: TestDatabase, previousThisUpdate: Date | null) {
    const scope = { issuer: ISSUER, previousThisUpdate };
    expectOrderedIndexWalk(await db.db.asOperator((tx) => explainRevokedEntriesRead(tx, scope)));
    const tilted = await db.db.asOperator(async (tx) => {
      await tx.exec('SET LOCAL random_page_cost = 10000; SET LOCAL cpu_index_tuple_cost = 100');
      return explainRevokedEntriesRead(tx, scope);
    });
    expectOrderedIndexWalk(tilted);
  }

  async function readAll(db: TestDatabase) {
    const serials: string[] = [];
    await db.db.asOperator((tx) => forEachRevokedCertificate(tx, { issuer: ISSUER, previousThisUpdate: null }, (serial) => void serials.push(serial)));
    return serials;
  }

  const numericOrder = (serials: string[]) => serials.every((s, i) => i === 0 || BigInt('0x' + serials[i - 1]) < BigInt('0x' + s));

  it('revoked rows inserted in one statement, never analyzed: an ordered walk of the CRL index', async () => {
    const db = await freshTable();
    await insertRevokedCertificates(db.driver, { count: COUNT, now: new Date(), issuer: ISSUER });
    await expectPlans(db, new Date());
    const serials = await readAll(db);
    expect(serials.length).toBe(COUNT);
    expect(numericOrder(serials)).toBe(true);
  });

  it('certificates revoked by one UPDATE, never analyzed: an ordered walk of the CRL index', async () => {
    const db = await freshTable();
    await insertRevokedCertificates(db.driver, { count: COUNT, now: new Date(), issuer: ISSUER, status: 'ACTIVE' });
    await db.driver.transaction((tx) =>
      tx.query(`UPDATE device_certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = 'keyCompromise' WHERE issuer = $1`, [ISSUER]),
    );
    await expectPlans(db, null);
    const serials = await readAll(db);
    expect(serials.length).toBe(COUNT);
    expect(numericOrder(serials)).toBe(true);
  });
});
