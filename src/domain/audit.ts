/** One audit log entry as the API shows it. */
export interface AuditEventRecord {
  id: number;
  tenant_id: string;
  actor: string;
  action: string;
  target_type: string;
  target_id: string;
  details: Record<string, unknown>;
  created_at: string;
}
