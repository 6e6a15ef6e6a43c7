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
            options?.prepared
              ? client.query({ name: options.prepared, text: sql, values: params as unknown[] })
              : hasLargeBuffer(params)
                ? queryWithLargeParams(client, sql, params as unknown[])
                : client.query(sql, params as unknown[]),
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
 * Buffer parameters from this size on are not copied into the Bind message. node-pg's serializer
 * copies every parameter into one buffer grown for the message: for a CRL of tens of MB stored
 * in crl_state (a million entries: 48 MB), a fresh allocation of that size (its page faults) and
 * the copy, on the main thread, at every publication (the largest item of a 1M-entry
 * publication's profile after the CRL's own hashes).
 */
export const LARGE_PARAM_BYTES = 1 << 20;

const hasLargeBuffer = (params: readonly unknown[] | undefined): boolean => params !== undefined && params.some((p) => p instanceof Uint8Array && p.length >= LARGE_PARAM_BYTES);

interface PgConnection {
  stream: { writable: boolean; write(chunk: Uint8Array): boolean };
  bind(config: { portal?: string; statement?: string; values?: unknown[]; binary?: boolean; valueMapper?: (value: unknown, index: number) => unknown }): void;
}

/**
 * The Bind message (PostgreSQL's frontend/backend protocol: portal, statement, the parameters'
 * format codes, each parameter as its length and bytes, the result format codes) as chunks: the
 * small fields in one buffer between the binary parameters, each binary one as it is. Written to
 * the socket as they are (node-pg corks it while it sends a query's messages: one writev).
 */
export function bindMessageChunks(config: Parameters<PgConnection['bind']>[0]): Uint8Array[] {
  const values = (config.values ?? []).map((v, i) => (config.valueMapper ? config.valueMapper(v, i) : v));
  const chunks: Uint8Array[] = [];
  let small: number[] = [];
  const flush = () => {
    if (small.length) chunks.push(Buffer.from(small));
    small = [];
  };
  const int16 = (n: number) => small.push((n >>> 8) & 0xff, n & 0xff);
  const int32 = (n: number) => small.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  const bytes = (b: Uint8Array) => {
    for (const x of b) small.push(x);
  };
  const cstring = (text: string) => {
    bytes(Buffer.from(text, 'utf8'));
    small.push(0);
  };
  cstring(config.portal ?? '');
  cstring(config.statement ?? '');
  int16(values.length);
  for (const v of values) int16(v instanceof Uint8Array ? 1 : 0);
  int16(values.length);
  for (const v of values) {
    if (v === null || v === undefined) {
      int32(-1);
    } else if (v instanceof Uint8Array) {
      int32(v.length);
      flush();
      chunks.push(v); // as it is: no copy
    } else {
      // node-pg's valueMapper (prepareValue) gives text for everything but null and binary.
      const text = Buffer.from(typeof v === 'string' ? v : String(v as number | bigint | boolean), 'utf8');
      int32(text.length);
      bytes(text);
    }
  }
  int16(1);
  int16(config.binary ? 1 : 0);
  flush();
  let length = 4;
  for (const c of chunks) length += c.length;
  const header = Buffer.alloc(5);
  header[0] = 0x42; // 'B'
  header.writeInt32BE(length, 1);
  return [header, ...chunks];
}

/** A pg.Query whose Bind message is written as bindMessageChunks (no copy of its large parameters). */
class LargeParamQuery extends (pg.Query as unknown as new (config: pg.QueryConfig & { callback?: (error: Error | null, result: pg.QueryResult) => void }) => pg.Query) {
  prepare(connection: PgConnection): void {
    const own = Object.prototype.hasOwnProperty.call(connection, 'bind');
    const original = connection.bind;
    connection.bind = (config) => {
      if (!connection.stream.writable) return;
      for (const chunk of bindMessageChunks(config)) connection.stream.write(chunk);
    };
    try {
      (pg.Query.prototype as unknown as { prepare(connection: PgConnection): void }).prepare.call(this, connection);
    } finally {
      if (own) connection.bind = original;
      else delete (connection as Partial<PgConnection>).bind;
    }
  }
}

function queryWithLargeParams(client: pg.PoolClient, text: string, values: unknown[]): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    client.query(new LargeParamQuery({ text, values, callback: (error, result) => (error ? reject(error) : resolve(result)) }));
  });
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
 * interface (as pg-copy-streams uses it) runs it. The server sends one CopyData message per row
 * (the header before the first row, the -1 trailer on its own), so each value is handed over as it
 * arrives, a view into the bytes read from the socket, while the server produces the next rows.
 * Binary COPY: the signature, flags and header extension, then per row a field count, each field's
 * length and bytes, then -1.
 *
 * At a million rows, node-pg's own handling of a CopyData message (its parser's message object and
 * buffer view, two events, the merge of each socket read with the partial message before it) cost
 * more than the rows' own work. So while the COPY runs, the socket's reads go through
 * `CopyDataReader` first: it walks the messages in each read, takes the CopyData ones itself and
 * passes every other message (CopyOutResponse, CommandComplete, ErrorResponse, notices,
 * ReadyForQuery...) whole and in order to node-pg's parser, which handles them as usual; after
 * ReadyForQuery node-pg reads the socket alone again. Without the socket node-pg is expected to
 * have (another version), CopyData messages take node-pg's path.
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
    /** One CopyData message's bytes, chunk[from, to). */
    const copyData = (chunk: Buffer, from: number, to: number) => {
      if (failure) return;
      try {
        let at = from;
        if (!headerSeen) {
          if (to - at < 19 || !chunk.subarray(at, at + 11).equals(COPY_BINARY_SIGNATURE)) throw bad('no signature');
          at += 19 + chunk.readUInt32BE(at + 15);
          headerSeen = true;
        }
        while (at < to) {
          if (ended) throw bad('data after the trailer');
          const fields = (chunk[at]! << 8) | chunk[at + 1]!;
          if (fields === 0xffff) {
            ended = true;
            at += 2;
            continue;
          }
          if (fields !== 1) throw bad(`${fields} columns, not one`);
          const length = ((chunk[at + 2]! << 24) | (chunk[at + 3]! << 16) | (chunk[at + 4]! << 8) | chunk[at + 5]!) | 0;
          at += 6;
          if (length === -1) continue; // NULL: nothing to hand over
          if (length < 0 || at + length > to) throw bad('a row split across messages');
          onValue(chunk, at, at + length);
          count++;
          at += length;
        }
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
      }
    };
    const submittable = {
      submit(connection: { query(text: string): void; stream?: unknown }) {
        CopyDataReader.install(connection.stream, copyData);
        connection.query(`COPY (${sql}) TO STDOUT (FORMAT binary)`);
      },
      handleCopyOutResponse() {},
      handleCopyData(message: { chunk: Buffer }) {
        copyData(message.chunk, 0, message.chunk.length);
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

/** Backend message types the reader looks for. */
const COPY_DATA = 0x64; // 'd'
const READY_FOR_QUERY = 0x5a; // 'Z'

type DataListener = (chunk: Buffer) => void;
interface PgSocket {
  listeners(event: 'data'): unknown[];
  on(event: 'data', listener: DataListener): unknown;
  prependListener(event: 'data', listener: DataListener): unknown;
  removeListener(event: 'data', listener: DataListener): unknown;
}

/**
 * Stands between a pg connection's socket and node-pg's parser for one COPY TO STDOUT: CopyData
 * messages go to `onCopyData` (the message's payload, a view into the socket's read), every other
 * message to node-pg's parser, whole and in order; at ReadyForQuery (the end of the statement) it
 * gives the socket back. Installed when the COPY is submitted, i.e. right after the previous
 * statement's ReadyForQuery, when node-pg's parser holds no partial message: a pool connection in
 * a transaction does not LISTEN, so what may arrive unsolicited between two statements is only a
 * ParameterStatus after a server configuration reload or a fatal error, a few dozen bytes each.
 * Such a message cut by the socket's read at that very moment would be the one case this reader
 * frames wrongly (node-pg's parser, holding its first part, would get the next messages whole).
 */
export class CopyDataReader {
  /** The bytes of an incomplete message at the end of the last read(s), and how many of them there are. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  private constructor(
    private readonly socket: PgSocket,
    private readonly parser: DataListener,
    private readonly onCopyData: (chunk: Buffer, from: number, to: number) => void,
  ) {}

  /** Takes over `stream`'s reads when it is node-pg's socket with its one parser listener; else does nothing (node-pg's path). */
  static install(stream: unknown, onCopyData: (chunk: Buffer, from: number, to: number) => void): void {
    const candidate = stream as Partial<PgSocket> | null | undefined;
    if (!candidate || typeof candidate.listeners !== 'function' || typeof candidate.on !== 'function') return;
    const socket = candidate as PgSocket;
    const listeners = socket.listeners('data');
    const parser = listeners[0] as DataListener;
    if (listeners.length !== 1 || typeof parser !== 'function') return;
    const reader = new CopyDataReader(socket, parser, onCopyData);
    socket.removeListener('data', parser);
    socket.on('data', reader.read);
  }

  private readonly read = (data: Buffer): void => {
    let from = 0;
    if (this.pendingBytes > 0) {
      // A message begun in an earlier read: joined with only the bytes of this read that complete it
      // (the rest of the read is walked in place, not copied). A large one may span many reads.
      let head = this.pending[0]!;
      if (head.length < 5) {
        head = Buffer.concat([...this.pending, data.subarray(0, 5)]);
        if (head.length < 5) {
          this.pending = [head];
          this.pendingBytes = head.length;
          return;
        }
      }
      const missing = 1 + head.readUInt32BE(1) - this.pendingBytes;
      if (data.length < missing) {
        this.pending.push(data);
        this.pendingBytes += data.length;
        return;
      }
      const message = Buffer.concat([...this.pending, data.subarray(0, missing)]);
      this.pending = [];
      this.pendingBytes = 0;
      from = missing;
      if (this.walk(message, 0) < 0) {
        if (from < data.length) this.parser(data.subarray(from)); // node-pg reads again: what followed goes to it
        return;
      }
    }
    const at = this.walk(data, from);
    if (at >= 0 && at < data.length) {
      // The start of a message the next read completes: a copy (a view would keep the whole read alive).
      const rest = Buffer.from(data.subarray(at));
      this.pending = [rest];
      this.pendingBytes = rest.length;
    }
  };

  /**
   * The whole messages of chunk[from…]: CopyData to onCopyData, the others to node-pg's parser.
   * Returns where the first incomplete message starts, or -1 once ReadyForQuery gave node-pg the
   * socket back (the rest of the chunk was passed to it).
   */
  private walk(chunk: Buffer, from: number): number {
    let at = from;
    let passFrom = -1; // start of messages to pass on to node-pg's parser
    while (at + 5 <= chunk.length) {
      const type = chunk[at]!;
      const end = at + 1 + (((chunk[at + 1]! << 24) | (chunk[at + 2]! << 16) | (chunk[at + 3]! << 8) | chunk[at + 4]!) >>> 0);
      if (end > chunk.length) break;
      if (type === COPY_DATA) {
        if (passFrom >= 0) this.parser(chunk.subarray(passFrom, at));
        passFrom = -1;
        this.onCopyData(chunk, at + 5, end);
      } else {
        if (passFrom < 0) passFrom = at;
        if (type === READY_FOR_QUERY) {
          // The statement is over: node-pg reads the socket again, from this message on (whatever follows it included).
          this.socket.removeListener('data', this.read);
          this.socket.prependListener('data', this.parser);
          this.parser(chunk.subarray(passFrom));
          return -1;
        }
      }
      at = end;
    }
    if (passFrom >= 0) this.parser(chunk.subarray(passFrom, at));
    return at;
  }
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
