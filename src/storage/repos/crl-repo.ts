import type { CrlToStore, EncodedEntryCallback, RestoredRevocations, RevokedEntriesScope, RevokedEntryCallback, StoredCrlInfo } from '../../app/storage-ports.ts';
import { randomUUID } from 'node:crypto';
import type { RevocationListener } from '../../app/ports.ts';
import type { Database } from '../database.ts';
import { onlyRow, type Driver, type Listening, type Queryable } from '../driver.ts';
import type { Logger } from '../../support/logger.ts';
import { dateOrNull, text, textOrNull } from '../rows.ts';

const INFO_COLUMNS = `issuer_key_id, crl_number::text AS crl_number, this_update, next_update, sha256, entries,
  octet_length(der) AS bytes, built_at, published_at, number_floor::text AS number_floor`;


const toInfo = (r: Record<string, unknown>): StoredCrlInfo => ({
  issuerKeyId: String(r.issuer_key_id),
  crlNumber: BigInt(String(r.crl_number)),
  thisUpdate: dateOrNull(r.this_update),
  nextUpdate: dateOrNull(r.next_update),
  sha256: textOrNull(r.sha256),
  entries: r.entries === null ? null : Number(r.entries),
  bytes: r.bytes === null ? null : Number(r.bytes),
  builtAt: dateOrNull(r.built_at),
  publishedAt: dateOrNull(r.published_at),
  numberFloor: r.number_floor === null || r.number_floor === undefined ? 0n : BigInt(text(r.number_floor)),
});

/**
 * Locks the CA's crl_state row for the rest of the transaction (creating it on first use):
 * publishers on every replica queue here, so CRL numbers are handed out one at a time.
 */
export async function lockCrlState(tx: Queryable, issuerKeyId: string): Promise<StoredCrlInfo> {
  await tx.query('INSERT INTO crl_state (issuer_key_id) VALUES ($1) ON CONFLICT (issuer_key_id) DO NOTHING', [issuerKeyId]);
  const { rows } = await tx.query(`SELECT ${INFO_COLUMNS} FROM crl_state WHERE issuer_key_id = $1 FOR UPDATE`, [issuerKeyId]);
  return toInfo(onlyRow(rows, `lock crl_state ${issuerKeyId}`));
}

/** Stores a new CRL in the locked row; built_at is the transaction start (no later than the entries' snapshot). */
export async function saveCrl(tx: Queryable, issuerKeyId: string, crl: CrlToStore): Promise<StoredCrlInfo> {
  const { rows } = await tx.query(
    `UPDATE crl_state SET crl_number = $2::bigint, this_update = $3, next_update = $4, der = $5, sha256 = $6, entries = $7,
       built_at = now(), published_at = $8, file_signature = $9, file_without_entry_extensions = $10
     WHERE issuer_key_id = $1 RETURNING ${INFO_COLUMNS}`,
    [issuerKeyId, crl.crlNumber.toString(), crl.thisUpdate, crl.nextUpdate, crl.der, crl.sha256, crl.entries, crl.publishedAt, crl.fileSignature, crl.fileWithoutEntryExtensions],
  );
  const [row] = rows;
  if (row === undefined) throw new Error(`crl_state row ${issuerKeyId} vanished`);
  return toInfo(row);
}

/** The latest published CRL's metadata; null before the first publication. */
export async function readCrlInfo(tx: Queryable, issuerKeyId: string): Promise<StoredCrlInfo | null> {
  const { rows } = await tx.query(`SELECT ${INFO_COLUMNS} FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`, [issuerKeyId]);
  const [row] = rows;
  return row ? toInfo(row) : null;
}

/** The latest published CRL with its DER (base64 on the wire: much cheaper to decode than bytea's hex). */
export async function readCrl(tx: Queryable, issuerKeyId: string): Promise<{ info: StoredCrlInfo; der: Buffer } | null> {
  const { rows } = await tx.query(
    `SELECT ${INFO_COLUMNS}, encode(der, 'base64') AS der_base64 FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`,
    [issuerKeyId],
  );
  const [row] = rows;
  if (row === undefined) return null;
  return { info: toInfo(row), der: Buffer.from(String(row.der_base64), 'base64') };
}

/** The latest CRL and the signature of its file variant (null: stored before there was one); null before the first publication. */
export async function readCrlForFile(tx: Queryable, issuerKeyId: string): Promise<{ der: Buffer; fileSignature: Buffer | null; fileWithoutEntryExtensions: boolean } | null> {
  const { rows } = await tx.query(
    `SELECT encode(der, 'base64') AS der_base64, file_signature, file_without_entry_extensions FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`,
    [issuerKeyId],
  );
  const [row] = rows;
  if (row === undefined) return null;
  const signature = row.file_signature;
  return {
    der: Buffer.from(String(row.der_base64), 'base64'),
    fileSignature: signature == null ? null : Buffer.from(signature as Uint8Array),
    fileWithoutEntryExtensions: row.file_without_entry_extensions === true,
  };
}


/**
 * The revoked certificates of a CRL as compact `serial epoch-seconds reason` texts (one column:
 * one string per row for the driver to make), one statement (one snapshot), in heap order: no
 * ORDER BY (the CRL's entries encoder sorts them once, in memory). The reason is the rest of the
 * text, whatever it holds.
 */
const ENTRY_TEXT = `serial_number || ' ' || floor(date_part('epoch', revoked_at))::int8 || ' ' || floor(date_part('epoch', not_after))::int8 || ' ' || coalesce(revoked_reason, '')`;
const REVOKED_ENTRIES_SQL = `
  SELECT ${ENTRY_TEXT}
  FROM device_certificates
  WHERE status = 'REVOKED' AND issuer = $1 AND ($2::timestamptz IS NULL OR not_after >= $2 OR revoked_at >= $2)`;
/** The same entries, of these serials only (the rows whose pending marks a build took). */
const REVOKED_ENTRIES_OF_SQL = `
  SELECT ${ENTRY_TEXT}
  FROM device_certificates
  WHERE status = 'REVOKED' AND issuer = $1 AND ($2::timestamptz IS NULL OR not_after >= $2 OR revoked_at >= $2)
    AND serial_number = ANY($3::text[])`;

/** Parses an integer field of an entry line ending at the next space; returns [value, index after the space]. */
function parseSeconds(text: string, from: number): [number, number] {
  let q = from;
  let negative = false;
  if (text.charCodeAt(q) === 45) {
    negative = true;
    q++;
  }
  let seconds = 0;
  for (let c = text.charCodeAt(q); c !== 32; c = text.charCodeAt(++q)) {
    if (c < 48 || c > 57 || q >= text.length) throw new Error(`unexpected revoked entry line: ${text}`);
    seconds = seconds * 10 + (c - 48);
  }
  return [negative ? -seconds : seconds, q + 1];
}

/** `serial revoked-epoch not-after-epoch reason…` → onEntry. */
function entryLine(row: unknown[], onEntry: RevokedEntryCallback): void {
  const text = row[0] as string;
  const a = text.indexOf(' ');
  const [revoked, b] = parseSeconds(text, a + 1);
  const [notAfter, c] = parseSeconds(text, b);
  onEntry(text.slice(0, a), revoked * 1000, text.slice(c), notAfter * 1000);
}



/**
 * The plan must not depend on table statistics or on the visibility map. Right after a bulk
 * insert or a bulk revocation (no ANALYZE, no VACUUM yet) the planner believes the table is nearly
 * empty: a keyset walk was planned as a bitmap scan plus a sort of every remaining row per batch (a
 * minute for 1M), and even a forced ordered walk of the index reads every heap row in random order
 * when no page is all-visible yet (12 s for 1M). Only a bitmap scan is left to the planner: the
 * partial index device_certificates_crl finds this CA's revoked rows, the heap is read in physical
 * order, once. No parallel workers (rows would cross a shared-memory queue for nothing) and no JIT
 * (its compile time, 100-200 ms, is wasted on this statement).
 */
const HEAP_ORDER_BITMAP_ONLY = ['enable_seqscan', 'enable_indexscan', 'enable_indexonlyscan', 'jit'];
const setPlanner = (tx: Queryable, mode: 'read' | 'DEFAULT') =>
  tx.exec(
    [
      ...HEAP_ORDER_BITMAP_ONLY.map((name) => `SET LOCAL ${name} TO ${mode === 'read' ? 'off' : 'DEFAULT'}`),
      `SET LOCAL max_parallel_workers_per_gather TO ${mode === 'read' ? '0' : 'DEFAULT'}`,
    ].join('; '),
  );

/**
 * Hands the revoked certificates of the scope's CRL to onEntry as the rows arrive, in no
 * particular order (heap order), from one statement (one snapshot): whatever onEntry does with
 * a row overlaps with the server producing the next ones. Run it as the operator role.
 * Returns the number of entries.
 */
export async function forEachRevokedCertificate(tx: Queryable, scope: RevokedEntriesScope, onEntry: RevokedEntryCallback): Promise<number> {
  await setPlanner(tx, 'read');
  const count = await tx.stream(REVOKED_ENTRIES_SQL, [scope.issuer, scope.previousThisUpdate], (row) => entryLine(row, onEntry));
  await setPlanner(tx, 'DEFAULT');
  return count;
}

/** A SQL string literal (standard_conforming_strings is on in every supported Postgres): COPY takes no parameters. */
const literal = (value: string) => {
  if (value.includes('\0')) throw new Error('a SQL literal cannot hold NUL');
  return `'${value.replace(/'/g, "''")}'`;
};

/**
 * The same rows as REVOKED_ENTRIES_SQL, one bytea each (one statement, one snapshot): the row's
 * stored entry (migration 035) followed by its revocation time and notAfter (timestamptz_send:
 * int8 microseconds since 2000-01-01), or, for a row without one, a 0x00 byte, the length (int4)
 * and the UTF-8 of its ENTRY_TEXT line. An entry begins with 0x30 (SEQUENCE): the two never mix up.
 * The server only sends bytes it keeps (no per-row text to make); the client gets them as they
 * are (byteaRows(): binary COPY on pg) and copies them (no per-row array, string or entry object).
 */
const encodedEntriesSql = (scope: RevokedEntriesScope) => {
  const since = scope.previousThisUpdate ? `${literal(scope.previousThisUpdate.toISOString())}::timestamptz` : 'NULL::timestamptz';
  return `
  SELECT coalesce(crl_entry || timestamptz_send(revoked_at) || timestamptz_send(not_after),
           '\\x00'::bytea || int4send(octet_length(convert_to(${ENTRY_TEXT}, 'UTF8'))) || convert_to(${ENTRY_TEXT}, 'UTF8'))
  FROM device_certificates
  WHERE status = 'REVOKED' AND issuer = ${literal(scope.issuer)} AND (${since} IS NULL OR not_after >= ${since} OR revoked_at >= ${since})`;
};

/** Seconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_SECONDS = 946_684_800;

/** A timestamptz_send value (int8 microseconds since 2000-01-01, big-endian) in whole Unix seconds; ±infinity as ±Infinity. */
function pgTimeSeconds(bytes: Uint8Array, at: number): number {
  const high = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) | 0;
  const low = ((bytes[at + 4]! << 24) | (bytes[at + 5]! << 16) | (bytes[at + 6]! << 8) | bytes[at + 7]!) >>> 0;
  if (high === 0x7fffffff && low === 0xffffffff) return Number.POSITIVE_INFINITY;
  if (high === -0x80000000 && low === 0) return Number.NEGATIVE_INFINITY;
  return Math.floor((high * 4294967296 + low) / 1_000_000) + PG_EPOCH_SECONDS;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Walks encodedEntriesSql's values in bytes[from, to): stored entries to onEncoded, text lines to onEntry. Returns the number of entries. */
export function walkEncodedEntries(bytes: Uint8Array, onEncoded: EncodedEntryCallback, onEntry: RevokedEntryCallback, from = 0, to = bytes.length): number {
  let count = 0;
  let at = from;
  while (at < to) {
    const tag = bytes[at]!;
    if (tag === 0x30) {
      const length = bytes[at + 1]!;
      // Short-form length only (an entry is at most 56 bytes); the encoder checks the rest of its shape.
      const end = at + 2 + length;
      if (length >= 0x80 || end + 16 > to) throw new Error(`malformed stored CRL entry at byte ${at}`);
      onEncoded(bytes, at, end, pgTimeSeconds(bytes, end), pgTimeSeconds(bytes, end + 8));
      at = end + 16;
    } else if (tag === 0x00 && at + 5 <= to) {
      const length = ((bytes[at + 1]! << 24) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 8) | bytes[at + 4]!) >>> 0;
      const end = at + 5 + length;
      if (end > to) throw new Error(`malformed revoked entry line at byte ${at}`);
      entryLine([utf8.decode(bytes.subarray(at + 5, end))], onEntry);
      at = end;
    } else {
      throw new Error(`unexpected byte 0x${tag.toString(16)} in the revoked entries at ${at}`);
    }
    count++;
  }
  return count;
}

/**
 * forEachRevokedCertificate for a CRL build: the rows' stored entries (migration 035) to
 * onEncoded, the other rows (revoked before that migration, or not encodable in SQL) as texts to
 * onEntry; one statement, planned as forEachRevokedCertificate's (a bitmap scan whatever the
 * statistics), its rows handled as they arrive.
 */
export async function forEachRevokedEntry(tx: Queryable, scope: RevokedEntriesScope, onEncoded: EncodedEntryCallback, onEntry: RevokedEntryCallback): Promise<number> {
  await setPlanner(tx, 'read');
  let count = 0;
  await tx.byteaRows(encodedEntriesSql(scope), (bytes, start, end) => {
    count += walkEncodedEntries(bytes, onEncoded, onEntry, start, end);
  });
  await setPlanner(tx, 'DEFAULT');
  return count;
}

/**
 * One batch of the crl_entry backfill (migration 036): the next `limit` revoked rows without a
 * stored entry whose id is above `afterId`, in id order, have their entry computed by the trigger of
 * migration 035 (an UPDATE naming crl_entry makes it recompute the column from the row: the same
 * function as at revocation, so the same bytes as the application's encoder). Rows the SQL encoder
 * declines stay NULL (read as texts, as before) and are passed over by the next batch's `afterId`.
 * Idempotent: a row with an entry is never selected. The rows are found through migration 036's
 * partial index (no sequential scan whatever the statistics); rows another transaction holds are
 * skipped (SKIP LOCKED: a revocation in progress fills its own). Returns the last id seen (null:
 * none left above afterId), and how many rows were looked at and filled.
 */
export async function backfillCrlEntries(tx: Queryable, afterId: number, limit: number): Promise<{ lastId: number | null; scanned: number; filled: number }> {
  const { rows } = await withBackfillPlanner(tx, () =>
    tx.query<{ last_id: number | null; scanned: number; filled: number }>(
      `WITH batch AS (${BACKFILL_BATCH_SQL}), filled AS (
         UPDATE device_certificates d SET crl_entry = NULL FROM batch WHERE d.id = batch.id RETURNING d.id, d.crl_entry IS NOT NULL AS done
       )
       SELECT max(id) AS last_id, count(*)::int AS scanned, count(*) FILTER (WHERE done)::int AS filled FROM filled`,
      [afterId, limit],
    ),
  );
  const row = rows[0];
  return { lastId: row?.last_id === null || row?.last_id === undefined ? null : Number(row.last_id), scanned: row?.scanned ?? 0, filled: row?.filled ?? 0 };
}

/** One backfill batch's rows: revoked, no stored entry, above $1 in id order, at most $2, skipping rows another transaction holds. */
const BACKFILL_BATCH_SQL = `SELECT id FROM device_certificates WHERE status = 'REVOKED' AND crl_entry IS NULL AND id > $1::bigint ORDER BY id LIMIT $2::int FOR UPDATE SKIP LOCKED`;

/** Runs `fn` with the backfill's planner settings (migration 036's partial index, whatever the statistics), then restores the defaults. */
async function withBackfillPlanner<T>(tx: Queryable, fn: () => Promise<T>): Promise<T> {
  await tx.exec('SET LOCAL enable_seqscan TO off; SET LOCAL enable_bitmapscan TO off; SET LOCAL jit TO off');
  const result = await fn();
  await tx.exec('SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT; SET LOCAL jit TO DEFAULT');
  return result;
}

/** The plan of one backfillCrlEntries batch's row selection (EXPLAIN, not run), under its settings: for tests. */
export async function explainCrlEntryBackfill(tx: Queryable): Promise<string> {
  const { rows } = await withBackfillPlanner(tx, () => tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${BACKFILL_BATCH_SQL}`, [0, 1000]));
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/** The plan of forEachRevokedEntry's statement (EXPLAIN, not run), under its planner settings: for tests. */
export async function explainRevokedEntryRead(tx: Queryable, scope: RevokedEntriesScope): Promise<string> {
  await setPlanner(tx, 'read');
  const { rows } = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${encodedEntriesSql(scope)}`);
  await setPlanner(tx, 'DEFAULT');
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/**
 * forEachRevokedCertificate for these serials only (an incremental build: the rows whose pending
 * marks it took). Found through the unique (issuer, serial) lookups, whatever the statistics.
 */
export async function forEachRevokedCertificateOf(tx: Queryable, scope: RevokedEntriesScope, serials: string[], onEntry: RevokedEntryCallback): Promise<number> {
  if (serials.length === 0) return 0;
  return tx.stream(REVOKED_ENTRIES_OF_SQL, [scope.issuer, scope.previousThisUpdate, serials], (row) => entryLine(row, onEntry));
}

/** The plan of the entries read (EXPLAIN, not run), with the planner settings it runs under: for tests. */
export async function explainRevokedEntriesRead(tx: Queryable, scope: RevokedEntriesScope): Promise<string> {
  await setPlanner(tx, 'read');
  const { rows } = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${REVOKED_ENTRIES_SQL}`, [scope.issuer, scope.previousThisUpdate]);
  await setPlanner(tx, 'DEFAULT');
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/**
 * A build takes the pending-revocation marks of its CA before it reads the entries: every mark it
 * removes belongs to a revocation committed before the read's snapshot, so it is in this CRL.
 * Returns the serials the marks name and whether one named none (a restore, a rebuild request:
 * only a full read from the database will do).
 */
export async function takePendingRevocations(tx: Queryable, issuer: string): Promise<{ serials: string[]; unnamed: boolean }> {
  const { rows } = await tx.query<{ serial_number: string | null }>('DELETE FROM crl_pending_revocations WHERE issuer = $1 RETURNING serial_number', [issuer]);
  const serials = new Set<string>();
  let unnamed = false;
  for (const r of rows) {
    if (r.serial_number === null) unnamed = true;
    else serials.add(r.serial_number);
  }
  return { serials: [...serials], unnamed };
}

/** Revocations committed after the latest CRL's read (e.g. the process died before it published them). */
export async function hasPendingRevocations(tx: Queryable, issuer: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM crl_pending_revocations WHERE issuer = $1 LIMIT 1', [issuer]);
  return rows.length > 0;
}

/** The latest nextUpdate of any stored CRL; null before the first publication. */
export async function latestCrlNextUpdate(tx: Queryable): Promise<Date | null> {
  const { rows } = await tx.query<{ n: unknown }>('SELECT max(next_update) AS n FROM crl_state');
  const v = rows[0]?.n;
  return dateOrNull(v);
}

/** The distinct CNs of the certificates with these serials (all tenants under the operator role). */
export async function commonNamesOfSerials(tx: Queryable, serials: string[]): Promise<string[]> {
  if (serials.length === 0) return [];
  const { rows } = await tx.query<{ common_name: string }>('SELECT DISTINCT common_name FROM device_certificates WHERE serial_number = ANY($1::text[])', [serials]);
  return rows.map((r) => r.common_name);
}

// ---------------------------------------------------------------------------------------------
// Disaster recovery: revocations an earlier CRL carried that the (restored) database lacks
// ---------------------------------------------------------------------------------------------

/** Raises the CA's CRL number floor (the next CRL is numbered above it); never lowers it. */
export async function raiseCrlNumberFloor(tx: Queryable, issuerKeyId: string, floor: bigint): Promise<void> {
  await tx.query('UPDATE crl_state SET number_floor = GREATEST(number_floor, $2::bigint) WHERE issuer_key_id = $1', [issuerKeyId, floor.toString()]);
}

/** Makes the next start or refresh build a new CRL of the CA (`issuer`: device_certificates.issuer), as a revocation does. */
export async function requestCrlRebuild(tx: Queryable, issuer: string): Promise<void> {
  await tx.query('INSERT INTO crl_pending_revocations (issuer) VALUES ($1)', [issuer]);
}

/**
 * Restores the revocations of `entries` (serials of the CA `issuer`, as a CRL listed them) that
 * the database does not hold: a known certificate that is not REVOKED becomes REVOKED with the
 * CRL's date and reason; an unknown serial is kept in crl_restored_entries (every later CRL lists
 * it). Already revoked or already kept: untouched (idempotent). A pending-revocation mark makes
 * the next start or refresh publish. One statement for the lot.
 */
export async function restoreRevocations(
  tx: Queryable,
  issuer: string,
  entries: ReadonlyArray<{ serialHex: string; revokedAt: Date; reason: string }>,
  sourceCrlNumber: bigint,
): Promise<RestoredRevocations> {
  if (entries.length === 0) return { remarked: [], kept: [] };
  // Lock order: the device rows first, in key order (their certificate summary, migration 024, is
  // rewritten by the update below), then the certificates, as revocation, rotation and the expiry
  // tick do: a restore at start never deadlocks against requests already being served.
  await tx.query(
    `SELECT 1 FROM device_registry r
     WHERE (r.tenant_id, r.device_id) IN (
       SELECT d.tenant_id, d.device_id FROM device_certificates d
       WHERE d.issuer = $1 AND d.serial_number = ANY($2::text[]) AND d.status <> 'REVOKED')
     ORDER BY r.tenant_id, r.device_id FOR NO KEY UPDATE`,
    [issuer, entries.map((e) => e.serialHex)],
  );
  const { rows } = await tx.query<{ kind: string; id: string | null; tenant_id: string | null; device_id: string | null; serial_number: string; previous_status: string | null; revoked_at: unknown; revoked_reason: string }>(
    `WITH input AS (
       SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS i(serial_number, revoked_at, revoked_reason)),
     known AS (
       SELECT d.id, d.status FROM device_certificates d JOIN input i ON d.issuer = $1 AND d.serial_number = i.serial_number
       WHERE d.status <> 'REVOKED' FOR UPDATE OF d),
     remarked AS (
       UPDATE device_certificates d SET status = 'REVOKED', revoked_at = i.revoked_at, revoked_reason = i.revoked_reason, updated_at = now()
       FROM known k, input i WHERE d.id = k.id AND i.serial_number = d.serial_number
       RETURNING d.id, d.tenant_id, d.device_id, d.serial_number, k.status AS previous_status, d.revoked_at, d.revoked_reason),
     kept AS (
       INSERT INTO crl_restored_entries (issuer, serial_number, revoked_at, revoked_reason, source_crl_number)
       SELECT $1, i.serial_number, i.revoked_at, i.revoked_reason, $5::bigint FROM input i
       WHERE NOT EXISTS (SELECT 1 FROM device_certificates d WHERE d.issuer = $1 AND d.serial_number = i.serial_number)
       ON CONFLICT (issuer, serial_number) DO NOTHING
       RETURNING serial_number, revoked_at, revoked_reason),
     mark AS (
       INSERT INTO crl_pending_revocations (issuer)
       SELECT $1 WHERE EXISTS (SELECT 1 FROM remarked) OR EXISTS (SELECT 1 FROM kept))
     SELECT 'remarked' AS kind, id::text AS id, tenant_id, device_id, serial_number, previous_status, revoked_at, revoked_reason FROM remarked
     UNION ALL
     SELECT 'kept', NULL, NULL, NULL, serial_number, NULL, revoked_at, revoked_reason FROM kept`,
    [issuer, entries.map((e) => e.serialHex), entries.map((e) => e.revokedAt), entries.map((e) => e.reason), sourceCrlNumber.toString()],
  );
  const out: RestoredRevocations = { remarked: [], kept: [] };
  for (const r of rows) {
    const revokedAt = dateOrNull(r.revoked_at)!;
    if (r.kind === 'remarked') {
      out.remarked.push({ id: Number(r.id), tenantId: String(r.tenant_id), deviceId: String(r.device_id), serialHex: r.serial_number, previousStatus: String(r.previous_status), revokedAt, reason: r.revoked_reason });
    } else {
      out.kept.push({ serialHex: r.serial_number, revokedAt, reason: r.revoked_reason });
    }
  }
  return out;
}

/** Whether a reconciled CRL listed this serial of the CA while the database did not know the certificate (it is revoked). */
export async function revokedOnEarlierCrl(tx: Queryable, issuer: string, serialHex: string): Promise<boolean> {
  const { rows } = await tx.query('SELECT 1 FROM crl_restored_entries WHERE issuer = $1 AND serial_number = $2', [issuer, serialHex]);
  return rows.length > 0;
}

/**
 * The kept revocations of unknown certificates of the CA (crl_restored_entries) for the CRL, as
 * forEachRevokedCertificate hands them out; a serial the database now holds as REVOKED is left to
 * that read (never listed twice).
 */
export async function forEachRestoredRevocation(tx: Queryable, issuer: string, onEntry: RevokedEntryCallback): Promise<number> {
  const { rows } = await tx.query<{ serial_number: string; at: string; revoked_reason: string }>(
    `SELECT r.serial_number, floor(date_part('epoch', r.revoked_at))::int8::text AS at, r.revoked_reason FROM crl_restored_entries r
     WHERE r.issuer = $1 AND NOT EXISTS (
       SELECT 1 FROM device_certificates d WHERE d.issuer = r.issuer AND d.serial_number = r.serial_number AND d.status = 'REVOKED')`,
    [issuer],
  );
  // A kept revocation never leaves the CRL (its certificate is unknown: no notAfter).
  for (const r of rows) onEntry(r.serial_number, Number(r.at) * 1000, r.revoked_reason, Number.POSITIVE_INFINITY);
  return rows.length;
}

// ---------------------------------------------------------------------------------------------
// CRL events between processes (LISTEN/NOTIFY)
// ---------------------------------------------------------------------------------------------

/**
 * Revocation and CRL events between processes, over Postgres LISTEN/NOTIFY on one channel.
 *
 * - An API replica, after a revocation committed, sends `{"e":"revoked","at":<db ms>}`; `at`
 *   is the database clock after the commit, so a CRL whose build began at or after `at`
 *   (crl_state.built_at) already lists it and the worker may skip a rebuild.
 * - A publisher, after storing a new CRL, sends `{"e":"published","n":"<number>"}`; every
 *   other worker copies it to its own broker's file.
 * Every message names its sender (`src`), so a process ignores its own. In one process
 * (serve, or PGlite, which is always one process) the publisher is called directly instead.
 */

export const CRL_CHANNEL = 'certfleet_crl';

export type CrlEvent = { e: 'revoked'; at: number; src: string } | { e: 'published'; n: string; src: string };

export interface RevocationEvents extends RevocationListener {
  /** Tells the other processes that CRL `crlNumber` was stored (no-op without NOTIFY). */
  crlPublished(crlNumber: bigint): void;
  /** Waits for the NOTIFYs in flight. */
  flush(): Promise<void>;
}

export interface RevocationEventsOptions {
  db: Database;
  /** This process's publisher, if it has one: called directly, at once. */
  local?: { revocationCommitted(): void } | null;
  /** Send NOTIFYs (pg: other processes may publish); false for PGlite. */
  notify: boolean;
  instanceId: string;
  logger: Logger;
}

export const newInstanceId = (): string => randomUUID();

/** The RevocationListener the use cases call after every committed revocation. */
export function createRevocationEvents(options: RevocationEventsOptions): RevocationEvents {
  const inFlight = new Set<Promise<unknown>>();
  const send = (sql: string, params: unknown[], what: string) => {
    if (!options.notify) return;
    const p = options.db
      .asOperator((tx) => tx.query(sql, params))
      .catch((error: Error) => options.logger.warn({ err: error.message, event: what }, 'could not NOTIFY the CRL publishers; the periodic refresh will catch up'))
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  return {
    revocationCommitted() {
      options.local?.revocationCommitted();
      send(
        `SELECT pg_notify($1, json_build_object('e', 'revoked', 'src', $2::text,
           'at', floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)::text)`,
        [CRL_CHANNEL, options.instanceId],
        'revoked',
      );
    },
    crlPublished(crlNumber) {
      send(`SELECT pg_notify($1, json_build_object('e', 'published', 'src', $2::text, 'n', $3::text)::text)`, [CRL_CHANNEL, options.instanceId, crlNumber.toString()], 'published');
    },
    async flush() {
      await Promise.allSettled([...inFlight]);
    },
  };
}

export interface CrlEventHandlers {
  onRevoked(committedBefore: Date): void;
  onPublished(crlNumber: bigint): void;
  /** After each (re)connection, with the database clock: events before it may have been missed. */
  onConnected(databaseNow: Date): void;
}

/** LISTENs for other processes' CRL events (pg only; null when the driver cannot listen). */
export function listenForCrlEvents(driver: Driver, instanceId: string, handlers: CrlEventHandlers, logger: Logger): Listening | null {
  if (!driver.listen) return null;
  return driver.listen(CRL_CHANNEL, {
    onNotification(payload) {
      let event: CrlEvent;
      try {
        event = JSON.parse(payload) as CrlEvent;
      } catch {
        logger.warn({ payload: payload.slice(0, 200) }, 'ignoring a malformed CRL event');
        return;
      }
      if (event.src === instanceId) return;
      if (event.e === 'revoked' && Number.isFinite(event.at)) handlers.onRevoked(new Date(event.at));
      else if (event.e === 'published' && /^\d+$/.test(String(event.n))) handlers.onPublished(BigInt(event.n));
    },
    onConnected: (now) => handlers.onConnected(now),
    onError: (error) => logger.warn({ err: error.message }, 'CRL event listener lost its connection; reconnecting'),
  });
}
