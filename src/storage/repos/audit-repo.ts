import type { AuditEvent, AuditListQuery, AuditPage } from '../../app/storage-ports.ts';
import type { AuditEventRecord } from '../../domain/audit.ts';
import type { Queryable } from '../driver.ts';
import { iso } from '../rows.ts';
import { createFilter } from '../sql-filter.ts';

/** Written in the same transaction as the change it records. */
export async function recordAudit(tx: Queryable, e: AuditEvent): Promise<void> {
  await tx.query(
    `INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [e.tenantId, e.actor, e.action, e.targetType, String(e.targetId), JSON.stringify(e.details ?? {}), e.at],
  );
}

const toAuditEvent = (r: Record<string, unknown>): AuditEventRecord => ({
  id: Number(r.id),
  tenant_id: String(r.tenant_id),
  actor: String(r.actor),
  action: String(r.action),
  target_type: String(r.target_type),
  target_id: String(r.target_id),
  details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  created_at: iso(r.created_at),
});

/**
 * Newest first, keyset pages on id (index (tenant_id, id)); no total: an audit log only
 * grows, and counting it on every page would cost more than the page.
 */
export async function listAuditEvents(tx: Queryable, q: AuditListQuery): Promise<AuditPage> {
  const f = createFilter();
  if (q.tenantId) f.add((p) => `tenant_id = ${p}`, q.tenantId);
  if (q.action) f.add((p) => `action = ${p}`, q.action);
  if (q.targetType) f.add((p) => `target_type = ${p}`, q.targetType);
  if (q.targetId) f.add((p) => `target_id = ${p}`, q.targetId);
  if (q.actor) f.add((p) => `actor = ${p}`, q.actor);
  if (q.beforeId) f.add((p) => `id < ${p}`, q.beforeId);
  const { rows } = await tx.query(`SELECT * FROM audit_events${f.sql()} ORDER BY id DESC LIMIT ${f.param(q.limit + 1)}`, f.params);
  const events = rows.slice(0, q.limit).map(toAuditEvent);
  const last = events[events.length - 1];
  return { events, next: rows.length > q.limit && last ? last.id : null };
}
