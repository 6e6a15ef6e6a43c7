import type { Queryable } from '../driver.ts';

/** The crl_state row of one CA, without the DER. crlNumber 0 with no DER: nothing published yet. */
export interface StoredCrlInfo {
  issuerKeyId: string;
  crlNumber: bigint;
  thisUpdate: Date | null;
  nextUpdate: Date | null;
  sha256: string | null;
  entries: number | null;
  bytes: number | null;
  /** Database time when that build began: every revocation committed before it is in that CRL. */
  builtAt: Date | null;
  publishedAt: Date | null;
}

export interface CrlToStore {
  crlNumber: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  der: Uint8Array;
  /** Signature of the broker's file variant (the same TBS without Issuing Distribution Point). */
  fileSignature: Uint8Array;
  sha256: string;
  entries: number;
  publishedAt: Date;
}

const INFO_COLUMNS = `issuer_key_id, crl_number::text AS crl_number, this_update, next_update, sha256, entries,
  octet_length(der) AS bytes, built_at, published_at`;

const date = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(String(v)));

const toInfo = (r: Record<string, unknown>): StoredCrlInfo => ({
  issuerKeyId: String(r.issuer_key_id),
  crlNumber: BigInt(String(r.crl_number)),
  thisUpdate: date(r.this_update),
  nextUpdate: date(r.next_update),
  sha256: r.sha256 === null ? null : String(r.sha256),
  entries: r.entries === null ? null : Number(r.entries),
  bytes: r.bytes === null ? null : Number(r.bytes),
  builtAt: date(r.built_at),
  publishedAt: date(r.published_at),
});

/**
 * Locks the CA's crl_state row for the rest of the transaction (creating it on first use):
 * publishers on every replica queue here, so CRL numbers are handed out one at a time.
 */
export async function lockCrlState(tx: Queryable, issuerKeyId: string): Promise<StoredCrlInfo> {
  await tx.query('INSERT INTO crl_state (issuer_key_id) VALUES ($1) ON CONFLICT (issuer_key_id) DO NOTHING', [issuerKeyId]);
  const { rows } = await tx.query(`SELECT ${INFO_COLUMNS} FROM crl_state WHERE issuer_key_id = $1 FOR UPDATE`, [issuerKeyId]);
  return toInfo(rows[0]);
}

/** Stores a new CRL in the locked row; built_at is the transaction start (no later than the entries' snapshot). */
export async function saveCrl(tx: Queryable, issuerKeyId: string, crl: CrlToStore): Promise<StoredCrlInfo> {
  const { rows } = await tx.query(
    `UPDATE crl_state SET crl_number = $2::bigint, this_update = $3, next_update = $4, der = $5, sha256 = $6, entries = $7,
       built_at = now(), published_at = $8, file_signature = $9
     WHERE issuer_key_id = $1 RETURNING ${INFO_COLUMNS}`,
    [issuerKeyId, crl.crlNumber.toString(), crl.thisUpdate, crl.nextUpdate, crl.der, crl.sha256, crl.entries, crl.publishedAt, crl.fileSignature],
  );
  if (rows.length === 0) throw new Error(`crl_state row ${issuerKeyId} vanished`);
  return toInfo(rows[0]);
}

/** The latest published CRL's metadata; null before the first publication. */
export async function readCrlInfo(tx: Queryable, issuerKeyId: string): Promise<StoredCrlInfo | null> {
  const { rows } = await tx.query(`SELECT ${INFO_COLUMNS} FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`, [issuerKeyId]);
  return rows.length ? toInfo(rows[0]) : null;
}

/** The latest published CRL with its DER (base64 on the wire: much cheaper to decode than bytea's hex). */
export async function readCrl(tx: Queryable, issuerKeyId: string): Promise<{ info: StoredCrlInfo; der: Buffer } | null> {
  const { rows } = await tx.query(
    `SELECT ${INFO_COLUMNS}, encode(der, 'base64') AS der_base64 FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`,
    [issuerKeyId],
  );
  if (rows.length === 0) return null;
  return { info: toInfo(rows[0]), der: Buffer.from(String(rows[0].der_base64), 'base64') };
}

/** The latest CRL and the signature of its file variant (null: stored before there was one); null before the first publication. */
export async function readCrlForFile(tx: Queryable, issuerKeyId: string): Promise<{ der: Buffer; fileSignature: Buffer | null } | null> {
  const { rows } = await tx.query(
    `SELECT encode(der, 'base64') AS der_base64, file_signature FROM crl_state WHERE issuer_key_id = $1 AND der IS NOT NULL`,
    [issuerKeyId],
  );
  if (rows.length === 0) return null;
  const signature = rows[0].file_signature;
  return { der: Buffer.from(String(rows[0].der_base64), 'base64'), fileSignature: signature == null ? null : Buffer.from(signature as Uint8Array) };
}

/** Entries per row of the entries statement: large enough that per-row overhead vanishes, small enough to stream. */
const ENTRIES_PER_BATCH = 20_000;

/** Which revoked certificates a CRL lists (RFC 5280 3.3 retention), all explicit. */
export interface RevokedEntriesScope {
  /** device_certificates.issuer of the CA: a CRL lists only its own CA's certificates. */
  issuer: string;
  /**
   * thisUpdate of the previous CRL (null: none yet). A revoked certificate stays listed until it
   * has been on one CRL whose thisUpdate is after its notAfter: listed while notAfter is at or
   * after the previous CRL's thisUpdate, and (not listed yet) when revoked after that CRL.
   */
  previousThisUpdate: Date | null;
}

/**
 * The revoked certificates of a CRL, in ascending serial order, as compact text: one statement
 * (one snapshot) whose rows are batches of `serial epoch-seconds reason` lines, produced by a
 * recursive keyset walk of the covering index device_certificates_crl. Postgres builds the next
 * batch while we parse the previous one (pg streams rows), and no row object per certificate is
 * ever made. Newlines in the free text reason become spaces (whitespace does not change the
 * reason code it maps to).
 */
const REVOKED_ENTRIES_SQL = `
  WITH RECURSIVE batch(n, last_len, last_serial, lines) AS (
    SELECT 0, 0, ''::text, NULL::text
    UNION ALL
    SELECT b.n + 1, length(s.last_serial), s.last_serial, s.lines
    FROM batch b
    CROSS JOIN LATERAL (
      SELECT string_agg(x.serial_number || ' ' || floor(date_part('epoch', x.revoked_at))::int8 || ' '
                        || replace(coalesce(x.revoked_reason, ''), E'\\n', ' '), E'\\n') AS lines,
             (array_agg(x.serial_number))[count(*)] AS last_serial,
             count(*) AS c
      FROM (
        SELECT serial_number, revoked_at, revoked_reason
        FROM device_certificates
        WHERE status = 'REVOKED' AND issuer = $1 AND ($2::timestamptz IS NULL OR not_after >= $2 OR revoked_at >= $2)
          AND (length(serial_number), serial_number) > (b.last_len, b.last_serial)
        ORDER BY issuer, length(serial_number), serial_number
        LIMIT ${ENTRIES_PER_BATCH}
      ) x
    ) s
    WHERE s.c > 0
  )
  SELECT lines FROM batch WHERE n > 0`;

/**
 * The plan must not depend on table statistics: right after a bulk insert or a bulk revocation,
 * before ANALYZE, Postgres estimates a handful of rows and plans each batch as a bitmap scan plus
 * a sort of every remaining row (a minute for 1M). Only the ordered index walk is allowed, for
 * this statement only; the JIT's compile time (100-200 ms) is wasted on it too.
 */
const ORDERED_INDEX_ONLY = ['enable_seqscan', 'enable_bitmapscan', 'enable_sort', 'jit'];
const setPlanner = (tx: Queryable, value: 'off' | 'DEFAULT') => tx.exec(ORDERED_INDEX_ONLY.map((name) => `SET LOCAL ${name} TO ${value}`).join('; '));

/**
 * Streams the revoked certificates of the scope's CRL to onEntry, ordered by serial numerically
 * (hex without leading zeros: by length, then text). Run it as the operator role. Returns the
 * number of entries.
 */
export async function forEachRevokedCertificate(
  tx: Queryable,
  scope: RevokedEntriesScope,
  onEntry: (serialHex: string, revokedAtMs: number, reason: string) => void,
): Promise<number> {
  await setPlanner(tx, 'off');
  let entries = 0;
  await tx.stream(REVOKED_ENTRIES_SQL, [scope.issuer, scope.previousThisUpdate], (row) => {
    const text = row[0] as string;
    const n = text.length;
    let p = 0;
    while (p < n) {
      const a = text.indexOf(' ', p);
      let q = a + 1;
      let negative = false;
      if (text.charCodeAt(q) === 45) {
        negative = true;
        q++;
      }
      let seconds = 0;
      for (let c = text.charCodeAt(q); c !== 32; c = text.charCodeAt(++q)) {
        if (c < 48 || c > 57 || q >= n) throw new Error(`unexpected revoked entries text near offset ${p}`);
        seconds = seconds * 10 + (c - 48);
      }
      let e = text.indexOf('\n', q + 1);
      if (e < 0) e = n;
      onEntry(text.slice(p, a), (negative ? -seconds : seconds) * 1000, text.slice(q + 1, e));
      entries++;
      p = e + 1;
    }
  });
  await setPlanner(tx, 'DEFAULT');
  return entries;
}

/** The plan of the entries read (EXPLAIN, not run), with the planner settings it runs under: for tests. */
export async function explainRevokedEntriesRead(tx: Queryable, scope: RevokedEntriesScope): Promise<string> {
  await setPlanner(tx, 'off');
  const { rows } = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${REVOKED_ENTRIES_SQL}`, [scope.issuer, scope.previousThisUpdate]);
  await setPlanner(tx, 'DEFAULT');
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/**
 * A build takes the pending-revocation marks of its CA before it reads the entries: every mark it
 * removes belongs to a revocation committed before the read's snapshot, so it is in this CRL.
 */
export async function takePendingRevocations(tx: Queryable, issuer: string): Promise<void> {
  await tx.query('DELETE FROM crl_pending_revocations WHERE issuer = $1', [issuer]);
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
  return v === null || v === undefined ? null : new Date(v instanceof Date ? v : String(v));
}
