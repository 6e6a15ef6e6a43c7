import { call, client } from '../api/client';
import { useLoad } from '../ui';

/** The tenant of system alerts and of the audit events of global CAs. */
export const SYSTEM_TENANT = '__system__';

/** The tenants the operator's pickers offer: those the API knows (the fleet overview's counters); none when not `enabled` (a customer's page). */
export function useTenants(enabled = true): string[] {
  const overview = useLoad(async () => (enabled ? call(client.GET('/api/v1/operator/fleet-overview')) : null), [enabled]);
  return overview.data?.tenants.map((t) => t.tenant_id) ?? [];
}

/**
 * A tenant picker fed by the API. A value the list does not hold (yet: it is still loading, or a
 * link names a tenant without devices) stays selectable, so a filter from the URL is never dropped.
 */
export function TenantSelect(props: { name: string; tenants: string[]; value: string; onChange: (v: string) => void; system?: boolean; label?: string }) {
  const known = [...(props.system ? [SYSTEM_TENANT] : []), ...props.tenants];
  const extra = props.value && !known.includes(props.value) ? [props.value] : [];
  return (
    <label>
      {props.label ?? 'Tenant'}
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Every tenant</option>
        {props.system ? <option value={SYSTEM_TENANT}>System ({SYSTEM_TENANT})</option> : null}
        {[...props.tenants, ...extra].map((t) => (
          <option key={t} value={t}>
            {t}
          </option>
        ))}
      </select>
    </label>
  );
}
