/**
 * The pg driver's Bind message with large binary parameters written as their own chunks
 * (src/storage/pg-driver.ts, LARGE_PARAM_BYTES): the bytes Postgres receives are the bytes given,
 * next to text, date, null and small binary parameters of the same statement, and an error in
 * the statement is reported as with node-pg's own serializer (the connection stays usable).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindMessageChunks, createPgDriver, LARGE_PARAM_BYTES } from '../src/storage/pg-driver.ts';
import { createThrowawayDatabase } from './support/databases.ts';

describe('pg driver: large binary parameters', () => {
  let database: Awaited<ReturnType<typeof createThrowawayDatabase>>;
  let driver: ReturnType<typeof createPgDriver>;
  beforeAll(async () => {
    database = await createThrowawayDatabase('certfleet_large_params');
    driver = createPgDriver(database.url, { max: 1 });
  });
  afterAll(async () => {
    await driver?.close();
    await database?.drop();
  });

  it('the Bind message in chunks is the one node-pg serializes, byte for byte', async () => {
    const { serialize } = await import('pg-protocol');
    const big = randomBytes(LARGE_PARAM_BYTES + 3);
    const config = { portal: '', statement: '', values: ['x', null, Buffer.from([1, 2, 3]), big, 'héllo', Buffer.alloc(0)], binary: false };
    const chunks = bindMessageChunks(config);
    expect(chunks).toContain(big); // not copied
    expect(Buffer.concat(chunks).equals(serialize.bind(config))).toBe(true);
  });

  it('stores and reads back a large bytea next to other parameters; an error leaves the connection usable', async () => {
    const big = randomBytes(3 * LARGE_PARAM_BYTES + 17);
    const small = Buffer.from('0102ff', 'hex');
    const when = new Date('2026-01-02T03:04:05.678Z');
    const row = await driver.transaction(async (tx) => {
      await tx.query('CREATE TABLE blobs (id int PRIMARY KEY, big bytea, small bytea, label text, at timestamptz, nothing text)');
      await tx.query('INSERT INTO blobs VALUES ($1, $2, $3, $4, $5, $6)', [1, big, small, 'crl ✓', when, null]);
      const { rows } = await tx.query<{ sha: string; n: number; small: Buffer; label: string; at: Date; nothing: null }>(
        "SELECT encode(sha256(big), 'hex') AS sha, length(big) AS n, small, label, at, nothing FROM blobs WHERE id = $1",
        [1],
      );
      return rows[0];
    });
    expect(row.n).toBe(big.length);
    expect(row.sha).toBe((await import('node:crypto')).createHash('sha256').update(big).digest('hex'));
    expect(Buffer.from(row.small).equals(small)).toBe(true);
    expect(row.label).toBe('crl ✓');
    expect(new Date(row.at).getTime()).toBe(when.getTime());
    expect(row.nothing).toBeNull();
    await expect(driver.transaction((tx) => tx.query('INSERT INTO blobs VALUES ($1, $2)', [1, big]))).rejects.toThrow(/duplicate key/);
    const again = await driver.transaction((tx) => tx.query<{ n: number }>('SELECT count(*)::int AS n FROM blobs WHERE big = $1', [big]));
    expect(again.rows[0].n).toBe(1);
  });
});
