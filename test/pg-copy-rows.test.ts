/**
 * byteaRows() on Postgres (binary COPY): while the COPY runs, the socket's reads go through the
 * driver's own CopyData reader, every other message to node-pg's parser (pg-driver.ts). Checked
 * here: every value arrives whole and in order whatever the socket's reads cut (values from 0
 * bytes to larger than a read, NULLs skipped); an error in the middle of the COPY rejects it, and
 * the connection serves the next transactions (before the fix the COPY's promise never settled:
 * node-pg forgets a statement at its ErrorResponse, so its ReadyForQuery reached no one); statements before and after
 * read as usual; notices the server sends during the COPY reach node-pg.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { CopyDataReader } from '../src/storage/pg-driver.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';

describe('byteaRows on Postgres (binary COPY through the driver’s CopyData reader)', () => {
  let database: TestDatabase | null = null;
  afterEach(async () => {
    await database?.close();
    database = null;
  });

  /** Values of varied sizes (some over 64 KB: a message spanning socket reads), computed by the server. */
  const VALUES_SQL = `SELECT CASE WHEN i % 97 = 0 THEN NULL
      WHEN i % 1000 = 1 THEN decode(repeat(md5(i::text), 6000), 'hex')
      ELSE substr(decode(md5(i::text) || md5((i * 7)::text), 'hex'), 1, i % 33) END
    FROM generate_series(1, 20000) i ORDER BY i`;

  it('hands over every value in order, byte for byte, and the connection goes on as usual', async () => {
    database = await createTestDatabase('pg');
    await database.driver.transaction(async (tx) => {
      const expected = await tx.query(VALUES_SQL);
      const want = expected.rows.map((r) => Object.values(r)[0] as Buffer | null).filter((v): v is Buffer => v !== null);
      const got: Buffer[] = [];
      const count = await tx.byteaRows(VALUES_SQL, (bytes, start, end) => {
        got.push(Buffer.from(bytes.subarray(start, end))); // a view into the socket's read: copied to keep
      });
      expect(count).toBe(want.length);
      expect(got.length).toBe(want.length);
      const digest = (list: Buffer[]) => list.reduce((h, v) => h.update(`${v.length}:`).update(v), createHash('sha256')).digest('hex');
      expect(digest(got)).toBe(digest(want));
      expect(got.some((v) => v.length > 65_536)).toBe(true);
      expect(got.some((v) => v.length === 0)).toBe(true);
      // the same connection, same transaction: ordinary statements and a second COPY
      expect((await tx.query<{ n: number }>('SELECT 41 + 1 AS n')).rows[0]!.n).toBe(42);
      expect(await tx.byteaRows(`SELECT '\\x0102'::bytea FROM generate_series(1, 3)`, () => undefined)).toBe(3);
      expect((await tx.query<{ s: string }>(`SELECT 'after' AS s`)).rows[0]!.s).toBe('after');
    });
    // the connection back in the pool still works
    await database.driver.transaction(async (tx) => {
      expect((await tx.query<{ n: number }>('SELECT 7 AS n')).rows[0]!.n).toBe(7);
    });
  });

  it('an error in the middle of the COPY rejects it; the transaction is aborted as usual and the connection serves the next one', async () => {
    database = await createTestDatabase('pg');
    let seen = 0;
    await expect(
      database.driver.transaction((tx) =>
        tx.byteaRows(`SELECT CASE WHEN i < 5000 THEN '\\xab'::bytea ELSE decode((1 / (i - 5000))::text, 'escape') END FROM generate_series(1, 10000) i`, () => {
          seen++;
        }),
      ),
    ).rejects.toThrow(/division by zero/);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(10_000);
    for (let i = 0; i < 3; i++) {
      await database.driver.transaction(async (tx) => {
        expect((await tx.query<{ n: number }>('SELECT $1::int + 1 AS n', [i])).rows[0]!.n).toBe(i + 1);
        expect(await tx.byteaRows(`SELECT '\\x00'::bytea FROM generate_series(1, 100)`, () => undefined)).toBe(100);
      });
    }
  });

  it('a notice the server sends during the COPY reaches node-pg, and the values still arrive', async () => {
    database = await createTestDatabase('pg');
    await database.driver.transaction(async (tx) => {
      await tx.exec(`CREATE FUNCTION pg_temp.noisy(i int) RETURNS bytea LANGUAGE plpgsql AS $$
        BEGIN IF i % 1000 = 0 THEN RAISE NOTICE 'row %', i; END IF; RETURN int4send(i); END $$`);
      const got: number[] = [];
      const count = await tx.byteaRows('SELECT pg_temp.noisy(i) FROM generate_series(1, 5000) i', (bytes, start) => {
        got.push(Buffer.from(bytes.subarray(start, start + 4)).readInt32BE(0));
      });
      expect(count).toBe(5000);
      expect(got).toEqual(Array.from({ length: 5000 }, (_, k) => k + 1));
      expect((await tx.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n).toBe(1);
    });
  });
});

describe('CopyDataReader (the socket reads cut anywhere)', () => {
  const message = (type: string, payload: Buffer) => {
    const header = Buffer.alloc(5);
    header[0] = type.charCodeAt(0);
    header.writeUInt32BE(4 + payload.length, 1);
    return Buffer.concat([header, payload]);
  };
  const payloads = Array.from({ length: 40 }, (_, i) => Buffer.alloc(i % 9 === 0 ? 0 : (i * 37) % 300, i));
  const before = message('H', Buffer.from([0, 0, 1, 0, 1]));
  const after = Buffer.concat([message('c', Buffer.alloc(0)), message('N', Buffer.from('notice\0')), message('C', Buffer.from('COPY 40\0')), message('Z', Buffer.from('I'))]);
  const later = message('A', Buffer.from('notification after the statement\0'));
  const stream = Buffer.concat([before, ...payloads.map((p) => message('d', p)), after, later]);

  function feed(cuts: number[]) {
    const socket = new EventEmitter();
    const toParser: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => toParser.push(Buffer.from(chunk)));
    const values: Buffer[] = [];
    CopyDataReader.install(socket, (chunk, from, to) => values.push(Buffer.from(chunk.subarray(from, to))));
    let at = 0;
    for (const cut of [...cuts, stream.length]) {
      if (cut <= at) continue;
      socket.emit('data', stream.subarray(at, cut));
      at = cut;
    }
    return { values, parsed: Buffer.concat(toParser), listeners: socket.listenerCount('data') };
  }

  it('hands every CopyData payload over whole and in order, every other byte to the parser in order, and gives the socket back at ReadyForQuery', () => {
    const cutsets: number[][] = [[]];
    for (let step = 1; step <= 7; step++) cutsets.push(Array.from({ length: Math.ceil(stream.length / step) }, (_, k) => k * step));
    for (let seed = 1; seed <= 20; seed++) {
      const cuts: number[] = [];
      for (let at = 0, x = seed; at < stream.length; ) cuts.push((at += 1 + ((x = (x * 1103515245 + 12345) % 2147483648) % 700)));
      cutsets.push(cuts);
    }
    for (const cuts of cutsets) {
      const { values, parsed, listeners } = feed(cuts);
      expect(values).toEqual(payloads);
      expect(parsed.equals(Buffer.concat([before, after, later]))).toBe(true);
      expect(listeners).toBe(1);
    }
  });

  it('leaves a stream that is not node-pg’s socket with one listener to node-pg', () => {
    const socket = new EventEmitter();
    socket.on('data', () => undefined);
    socket.on('data', () => undefined);
    const listeners = socket.listeners('data');
    CopyDataReader.install(socket, () => undefined);
    expect(socket.listeners('data')).toEqual(listeners);
    expect(() => CopyDataReader.install(undefined, () => undefined)).not.toThrow();
  });
});
