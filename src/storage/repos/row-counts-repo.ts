import type { CertificateStatus } from '../../domain/certificate.ts';
import type { Queryable } from '../driver.ts';

/**
 * Exact totals read from tenant_row_counts (migration 012: maintained by triggers in the
 * transaction that changes the rows), instead of counting a tenant's rows on every page.
 * Under a tenant transaction RLS keeps it to that tenant; an operator without `tenantId`
 * gets every tenant's sum.
 */
export async function countedRows(tx: Queryable, kinds: string[], tenantId?: string): Promise<number> {
  const tenant = tenantId === undefined ? '' : ' AND tenant_id = $2';
  const { rows } = await tx.query<{ n: number | null }>(
    `SELECT sum(n)::int8 AS n FROM tenant_row_counts WHERE kind = ANY($1::text[])${tenant}`,
    tenantId === undefined ? [kinds] : [kinds, tenantId],
  );
  return Number(rows[0]?.n ?? 0);
}

export const certificateKinds = (statuses: readonly CertificateStatus[]) => statuses.map((s) => `certificate:${s}`);
export const DEVICE_KIND = 'device';
