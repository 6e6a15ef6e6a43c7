import pg from 'pg';
import { onlyRow, queryableFrom, type Driver, type ListenHandlers, type Listening } from './driver.ts';
import { createBackoff } from '../support/backoff.ts';

// int8 (bigserial ids, counts) as JS numbers: ids stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));

/** Connections of the service's pool (plus one LISTEN connection): the descriptor budget keeps them free. */
export const PG_POOL_MAX = 10;

export function createPgDriver(connectionString: string, options: { max?: number } = {}): Driver & { pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString, max: options.max ?? PG_POOL_MAX });
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
          (sql, params, options) =>
            options?.prepared ? client.query({ name: options.prepared, text: sql, values: params as unknown[] }) : client.query(sql, params as unknown[]),
          (sql) => client.query(sql),
          (sql, params, onRow) => streamRows(client, sql, params, onRow),
          (sql, onValue) => copyByteaRows(client, sql, onValue),
        ));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined); // the transaction's own error is thrown below; a broken connection is released as such
        throw error;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
    listen: (channel, handlers) => listenWithReconnect(connectionString, channel, handlers),
  };
}

/**
 * One statement whose rows are handed over as node-pg parses them off the socket (a pg.Query
 * with a 'row' listener and no callback does not accumulate rows), so the server produces the
 * next rows while we process the previous ones.
 */
function streamRows(client: pg.PoolClient, sql: string, params: readonly unknown[], onRow: (row: unknown[]) => void): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let count = 0;
    let failure: Error | null = null;
    const config: pg.QueryArrayConfig = { text: sql, values: params as unknown[], rowMode: 'array' };
    const query = new pg.Query(config); // the 'row' events get arrays
    query.on('row', (row: unknown[]) => {
      if (failure !== null) return;
      try {
        onRow(row);
        count++;
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
      }
    });
    query.on('error', reject);
    query.on('end', () => (failure !== null ? reject(failure) : resolve(count)));
    client.query(query);
  });
}

/** Binary COPY's signature, flags and header extension length (PostgreSQL's COPY documentation). */
const COPY_BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * `COPY (sql) TO STDOUT (FORMAT binary)` of a statement of one bytea column: node-pg's Submittable
 * interface (as pg-copy-streams uses it) gets the CopyData messages, which carry the raw bytes (a
 * DataRow field would be decoded as UTF-8 text). The server sends one message per row (the
 * header before the first row, the -1 trailer on its own), so each value is handed over as it
 * arrives, a view into the message, while the server produces the next rows. Binary COPY: the
 * signature, flags and header extension, then per row a field count, each field's length and
 * bytes, then -1.
 */
function copyByteaRows(client: pg.PoolClient, sql: string, onValue: (bytes: Uint8Array, start: number, end: number) => void): Promise<number> {
  // The simple query protocol ends the text at a NUL: the rest would be read as the next messages.
  if (sql.includes('\0')) return Promise.reject(new Error('byteaRows(): the statement text holds a NUL character'));
  return new Promise((resolve, reject) => {
    let failure: Error | null = null;
    let headerSeen = false;
    let ended = false;
    let count = 0;
    const bad = (why: string) => new Error(`unexpected binary COPY data: ${why}`);
    const submittable = {
      submit(connection: { query(text: string): void }) {
        connection.query(`COPY (${sql}) TO STDOUT (FORMAT binary)`);
      },
      handleCopyOutResponse() {},
      handleCopyData(message: { chunk: Buffer }) {
        if (failure) return;
        const chunk = message.chunk;
        try {
          let at = 0;
          if (!headerSeen) {
            if (chunk.length < 19 || !chunk.subarray(0, 11).equals(COPY_BINARY_SIGNATURE)) throw bad('no signature');
            at = 19 + chunk.readUInt32BE(15);
            headerSeen = true;
          }
          while (at < chunk.length) {
            if (ended) throw bad('data after the trailer');
            const fields = chunk.readInt16BE(at);
            if (fields === -1) {
              ended = true;
              at += 2;
              continue;
            }
            if (fields !== 1) throw bad(`${fields} columns, not one`);
            const length = chunk.readInt32BE(at + 2);
            at += 6;
            if (length === -1) continue; // NULL: nothing to hand over
            if (at + length > chunk.length) throw bad('a row split across messages');
            onValue(chunk, at, at + length);
            count++;
            at += length;
          }
        } catch (error) {
          failure = error instanceof Error ? error : new Error(String(error));
        }
      },
      handleCommandComplete() {},
      handleRowDescription() {},
      handleDataRow() {},
      handleEmptyQuery() {},
      handlePortalSuspended() {},
      handleCopyInResponse() {},
      // node-pg forgets the statement on an ErrorResponse (its ReadyForQuery then reaches no one):
      // settled here, or the transaction (holding the CRL's row lock) would wait forever. The
      // ROLLBACK that follows is queued by node-pg until that ReadyForQuery.
      handleError(error: Error) {
        failure ??= error;
        reject(failure);
      },
      handleReadyForQuery() {
        if (!failure && !ended) failure = bad('no trailer');
        if (failure) reject(failure);
        else resolve(count);
      },
    };
    client.query(submittable as unknown as pg.Query);
  });
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/** LISTEN on a dedicated client; on any error or end, reconnect with exponential backoff. */
function listenWithReconnect(connectionString: string, channel: string, handlers: ListenHandlers): Listening {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid channel name ${channel}`);
  let closed = false;
  let client: pg.Client | null = null;
  const backoff = createBackoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS);
  let timer: NodeJS.Timeout | null = null;

  const scheduleReconnect = (error: Error) => {
    if (closed) return;
    handlers.onError?.(error);
    const current = client;
    client = null;
    current?.removeAllListeners();
    current?.on('error', () => undefined);
    current?.end().catch(() => undefined); // a connection being replaced: its close can only fail because it is already gone
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      void connect();
    }, backoff.next());
    timer.unref();
  };

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client({ connectionString });
    client = c;
    c.on('error', (error) => scheduleReconnect(error));
    c.on('end', () => scheduleReconnect(new Error('LISTEN connection ended')));
    c.on('notification', (message) => {
      if (message.channel === channel) handlers.onNotification(message.payload ?? '');
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${channel}`);
      const { rows } = await c.query<{ now: Date }>('SELECT clock_timestamp() AS now');
      if (closed || client !== c) return;
      backoff.reset();
      handlers.onConnected?.(onlyRow(rows, 'clock_timestamp()').now);
    } catch (error) {
      if (client === c) scheduleReconnect(error as Error);
    }
  };
  void connect();

  return {
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = null;
      if (c) {
        c.removeAllListeners();
        c.on('error', () => undefined);
        await c.end().catch(() => undefined); // shutting down: a close can only fail when the connection is already gone
      }
    },
  };
}
