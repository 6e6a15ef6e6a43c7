import type { BrokerNodeRecord, BrokerNodeReport } from '../../app/storage-ports.ts';
import { onlyRow, type Queryable } from '../driver.ts';
import { dateOrNull, text, textOrNull } from '../rows.ts';

const COLUMNS = `node, kind, crl_number::text AS crl_number, applied_at, reported_at, checked_at, check_result, check_detail, last_error,
  canary_valid_id::text AS canary_valid_id, canary_revoked_id::text AS canary_revoked_id, crl_numbers`;


const toRecord = (r: Record<string, unknown>): BrokerNodeRecord => ({
  node: String(r.node),
  kind: r.kind === 'rabbitmq' ? 'rabbitmq' : 'mosquitto',
  crlNumber: r.crl_number === null ? null : BigInt(text(r.crl_number)),
  appliedAt: dateOrNull(r.applied_at),
  reportedAt: dateOrNull(r.reported_at)!,
  checkedAt: dateOrNull(r.checked_at),
  checkResult: r.check_result === 'passed' || r.check_result === 'failed' ? r.check_result : null,
  checkDetail: textOrNull(r.check_detail),
  lastError: textOrNull(r.last_error),
  canaryValidId: r.canary_valid_id === null ? null : Number(r.canary_valid_id),
  canaryRevokedId: r.canary_revoked_id === null ? null : Number(r.canary_revoked_id),
  crlNumbers: numbersOf(r.crl_numbers),
});

/** The per-CA numbers as stored (jsonb: PGlite gives an object, a string on some paths). */
function numbersOf(value: unknown): Record<string, bigint> | null {
  if (value === null || value === undefined) return null;
  const obj = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  if (!obj || typeof obj !== 'object') return null;
  return Object.fromEntries(Object.entries(obj as Record<string, unknown>).map(([k, v]) => [k, BigInt(String(v))]));
}

/** Upsert of an agent's report: the applied CRL (number, time) only moves forward; a report without a check keeps the last one. */
export async function recordReport(tx: Queryable, r: BrokerNodeReport): Promise<BrokerNodeRecord> {
  const { rows } = await tx.query(
    `INSERT INTO broker_nodes AS b (node, kind, crl_number, applied_at, reported_at, checked_at, check_result, check_detail, last_error, created_at, crl_numbers)
     VALUES ($1, $2, $3::bigint, $4, $5, $6, $7, $8, $9, $5, $10::jsonb)
     ON CONFLICT (node) DO UPDATE SET
       kind = EXCLUDED.kind,
       crl_number = CASE WHEN b.crl_number IS NULL OR EXCLUDED.crl_number > b.crl_number THEN EXCLUDED.crl_number ELSE b.crl_number END,
       applied_at = CASE WHEN b.crl_number IS NULL OR EXCLUDED.crl_number > b.crl_number THEN EXCLUDED.applied_at ELSE b.applied_at END,
       reported_at = EXCLUDED.reported_at,
       checked_at = COALESCE(EXCLUDED.checked_at, b.checked_at),
       check_result = CASE WHEN EXCLUDED.checked_at IS NULL THEN b.check_result ELSE EXCLUDED.check_result END,
       check_detail = CASE WHEN EXCLUDED.checked_at IS NULL THEN b.check_detail ELSE EXCLUDED.check_detail END,
       last_error = EXCLUDED.last_error,
       crl_numbers = COALESCE(EXCLUDED.crl_numbers, b.crl_numbers)
     RETURNING ${COLUMNS}`,
    [r.node, r.kind, r.crlNumber === null ? null : r.crlNumber.toString(), r.appliedAt, r.now, r.checkedAt, r.checkResult, r.checkDetail, r.lastError, r.crlNumbers ? JSON.stringify(Object.fromEntries(Object.entries(r.crlNumbers).map(([k, v]) => [k, v.toString()]))) : null],
  );
  return toRecord(onlyRow(rows, 'upsert broker node'));
}

export async function findNode(tx: Queryable, node: string): Promise<BrokerNodeRecord | null> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM broker_nodes WHERE node = $1`, [node]);
  const [row] = rows;
  return row ? toRecord(row) : null;
}

export async function listNodes(tx: Queryable): Promise<BrokerNodeRecord[]> {
  const { rows } = await tx.query(`SELECT ${COLUMNS} FROM broker_nodes ORDER BY node`);
  return rows.map(toRecord);
}

export async function setCanaries(tx: Queryable, node: string, kind: string, ids: { valid: number; revoked: number }, now: Date): Promise<void> {
  await tx.query(
    `INSERT INTO broker_nodes (node, kind, reported_at, canary_valid_id, canary_revoked_id, created_at) VALUES ($1, $2, $3, $4, $5, $3)
     ON CONFLICT (node) DO UPDATE SET canary_valid_id = EXCLUDED.canary_valid_id, canary_revoked_id = EXCLUDED.canary_revoked_id`,
    [node, kind, now, ids.valid, ids.revoked],
  );
}

export async function revokedCommonNames(tx: Queryable, serials: string[]): Promise<Array<{ serial_number: string; common_name: string }>> {
  if (serials.length === 0) return [];
  const { rows } = await tx.query<{ serial_number: string; common_name: string }>(
    `SELECT serial_number, common_name FROM device_certificates WHERE status = 'REVOKED' AND serial_number = ANY($1::text[]) ORDER BY serial_number`,
    [serials],
  );
  return rows;
}
