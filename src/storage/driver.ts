export type Row = Record<string, unknown>;

export interface QueryResult<R = Row> {
  rows: R[];
  rowCount: number;
}

/**
 * The row a statement always returns (an aggregate, `INSERT … RETURNING` of one row, a row the
 * transaction just created or locked): its absence is a defect, reported as one, never `undefined`.
 */
export function onlyRow<R>(rows: readonly R[], what: string): R {
  const [row] = rows;
  if (row === undefined) throw new Error(`${what}: the statement returned no row`);
  return row;
}

export interface QueryOptions {
  prepared?: string;
}

/** What repositories need: one SQL statement at a time, inside a transaction they do not own. */
export interface Queryable {
  /**
   * `options.prepared`: a name for the statement, which the driver may prepare once per
   * connection and reuse (pg: a named prepared statement, parsed and planned once instead of at
   * every call; PGlite ignores it). Only for a constant text on a hot path; a name is one text.
   */
  query<R = Row>(sql: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /** Reads a large result in batches without materialising it (server-side cursor). */
  cursor<R = Row>(sql: string, params: readonly unknown[], batchSize: number, onBatch: (rows: R[]) => void): Promise<number>;
  /**
   * Runs one statement (one snapshot) and hands each row, as an array of column values, to
   * onRow as it arrives; no result array is built. pg streams the rows off the socket while
   * the server is still producing them; other drivers fetch them through a cursor. If onRow
   * throws, the remaining rows are skipped and the promise rejects with that error.
   */
  stream(sql: string, params: readonly unknown[], onRow: (row: unknown[]) => void): Promise<number>;
  /**
   * Runs one parameterless statement (one snapshot) of one bytea column and hands each row's
   * value (`bytes[start, end)`, valid during the call only; a NULL is skipped) to onValue as it
   * arrives; returns how many. pg reads them through COPY ... TO STDOUT (FORMAT binary): the bytes
   * as they are, no hex text for the server to make and the client to parse, no per-row array or
   * string; other drivers run the query.
   */
  byteaRows(sql: string, onValue: (bytes: Uint8Array, start: number, end: number) => void): Promise<number>;
}

/** The two storage engines (node-postgres and PGlite) behind one small interface. */
export interface Driver {
  readonly kind: 'pg' | 'pglite';
  /**
   * Runs fn in a transaction. `prelude` (parameterless SQL) runs first, in the same
   * round trip as BEGIN where the driver can.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, prelude?: string): Promise<T>;
  close(): Promise<void>;
  /**
   * LISTEN on a channel over a dedicated connection that reconnects by itself (pg only: PGlite
   * is one process, nothing to listen to). `onConnected` gets the database clock after each
   * (re)connection: notifications sent before it may have been missed.
   */
  listen?(channel: string, handlers: ListenHandlers): Listening;
}

export interface ListenHandlers {
  onNotification(payload: string): void;
  onConnected?(databaseNow: Date): void;
  onError?(error: Error): void;
}

export interface Listening {
  close(): Promise<void>;
}

/** A Queryable on top of any plain `query` function, with cursor support through DECLARE/FETCH. */
export function queryableFrom(
  run: (sql: string, params?: readonly unknown[], options?: QueryOptions) => Promise<{ rows: unknown[]; rowCount?: number | null; affectedRows?: number }>,
  exec: (sql: string) => Promise<unknown>,
  stream?: Queryable['stream'],
  byteaRows?: Queryable['byteaRows'],
): Queryable {
  let cursorSeq = 0;
  const query = async <R>(sql: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>> => {
    const result = await run(sql, params ?? [], options);
    return { rows: result.rows as R[], rowCount: result.rowCount ?? result.affectedRows ?? result.rows.length };
  };
  const queryable: Queryable = {
    query,
    exec: async (sql) => {
      await exec(sql);
    },
    async cursor<R>(sql: string, params: readonly unknown[], batchSize: number, onBatch: (rows: R[]) => void) {
      const name = `certfleet_cursor_${++cursorSeq}`;
      await run(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`, params);
      let total = 0;
      for (;;) {
        const { rows } = await query<R>(`FETCH FORWARD ${batchSize} FROM ${name}`);
        if (rows.length === 0) break;
        total += rows.length;
        onBatch(rows);
        if (rows.length < batchSize) break;
      }
      await run(`CLOSE ${name}`);
      return total;
    },
    stream:
      stream ??
      ((sql, params, onRow) =>
        queryable.cursor<Record<string, unknown>>(sql, params, 64, (rows) => {
          for (const row of rows) onRow(Object.values(row));
        })),
    byteaRows:
      byteaRows ??
      ((sql, onValue) =>
        queryable.cursor<Record<string, unknown>>(sql, [], 1000, (rows) => {
          for (const row of rows) {
            const value = Object.values(row)[0];
            if (value === null) continue;
            if (!(value instanceof Uint8Array)) throw new Error('byteaRows(): the statement must return one bytea column');
            onValue(value, 0, value.length);
          }
        })),
  };
  return queryable;
}
