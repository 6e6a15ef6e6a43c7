import type { AuditEvent } from '../../app/storage-ports.ts';
import type { Queryable } from '../driver.ts';

/** Written in the same transaction as the change it records. */
export async function recordAudit(tx: Queryable, e: AuditEvent): Promise<void> {
  await tx.query(
    `INSERT INTO audit_events (tenant_id, actor, action, target_type, target_id, details, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [e.tenantId, e.actor, e.action, e.targetType, String(e.targetId), JSON.stringify(e.details ?? {}), e.at],
  );
}
