import pg from 'pg';
import { queryableFrom, type Driver } from './driver.ts';

// int8 (bigserial ids, counts) as JS numbers: ids stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

export function createPgDriver(connectionString: string, options: { max?: number } = {}): Driver & { pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString, max: options.max ?? 10 });
  // An idle client that errors (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return {
    kind: 'pg',
    pool,
    async transaction(fn, prelude) {
      const client = await pool.connect();
      try {
        await client.query(prelude ? `BEGIN; ${prelude}` : 'BEGIN');
        const result = await fn(queryableFrom(
          (sql, params) => client.query(sql, params as unknown[]),
          (sql) => client.query(sql),
        ));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
