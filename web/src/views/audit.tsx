import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import { when } from '../format';
import { changedQuery, navigate, urlPager } from '../router';
import { FilterForm, Loading, Pager, useLoad } from '../ui';
import { TenantSelect, useTenants } from './tenants';

/** The filters in the URL (#/audit?action=certificate.revoked&actor=ops): a link or a reload shows the same events, on the same page. */
const FILTER_KEYS = ['tenant_id', 'action', 'target_type', 'target_id', 'actor'] as const;
type Filters = Partial<Record<(typeof FILTER_KEYS)[number], string>>;
const filtersOf = (query: URLSearchParams): Filters => Object.fromEntries(FILTER_KEYS.map((k) => [k, query.get(k) ?? undefined]).filter(([, v]) => v));

const FIELDS = [
  ['action', 'Action'],
  ['target_type', 'Target type'],
  ['target_id', 'Target ID'],
  ['actor', 'Actor'],
] as const;

/** The audit log (GET /audit-events): newest first, filter by action, target and actor (and tenant for operators, with the picker). */
export function AuditView({ scope, query }: { scope: 'customer' | 'operator'; query: URLSearchParams }) {
  const path = scope === 'operator' ? '/operator/audit' : '/audit';
  const filters = filtersOf(query);
  const tenants = useTenants(scope === 'operator');
  const pager = urlPager(query, 'cursor', (changes) => navigate(path, changedQuery(query, changes)));
  const page = useLoad(() => {
    const q = { ...filters, limit: 50, cursor: pager.cursor };
    return scope === 'customer'
      ? call(client.GET('/api/v1/customer/audit-events', { params: { query: { ...q, tenant_id: undefined } } }))
      : call(client.GET('/api/v1/operator/audit-events', { params: { query: q } }));
  }, [scope, JSON.stringify(filters), pager.cursor]);
  return (
    <section aria-labelledby="audit-heading">
      <h1 id="audit-heading">{scope === 'operator' ? 'Audit log of every tenant' : 'Audit log'}</h1>
      <AuditFilters key={JSON.stringify(filters)} operator={scope === 'operator'} tenants={tenants} initial={filters} onApply={(f) => navigate(path, f)} />
      <Loading loading={page.loading && !page.data} error={page.error} />
      {page.data ? (
        <>
          <div class="overflow-auto stack-on-phone" tabIndex={0} role="region" aria-label="Audit events, newest first">
            <table class="striped">
              <caption>Audit events, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  {scope === 'operator' ? <th scope="col">Tenant</th> : null}
                  <th scope="col">Actor</th>
                  <th scope="col">Action</th>
                  <th scope="col">Target</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {page.data.audit_events.length === 0 ? (
                  <tr>
                    <td colSpan={6}>No audit events match.</td>
                  </tr>
                ) : null}
                {page.data.audit_events.map((e) => (
                  <tr key={e.id}>
                    <td data-label="When">{when(e.created_at)}</td>
                    {scope === 'operator' ? <td data-label="Tenant">{e.tenant_id}</td> : null}
                    <td data-label="Actor">{e.actor}</td>
                    <td data-label="Action">{e.action}</td>
                    <td data-label="Target">
                      {e.target_type} {e.target_id}
                    </td>
                    <td data-label="Details" class="details">
                      <div>
                        {Object.entries(e.details).map(([key, value]) => (
                          <span key={key}>
                            {key}: <code class="wrap">{typeof value === 'string' ? value : JSON.stringify(value)}</code>{' '}
                          </span>
                        ))}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={page.data.next_cursor} label="Audit" />
        </>
      ) : null}
    </section>
  );
}

function AuditFilters(props: { operator: boolean; tenants: string[]; initial: Filters; onApply: (f: Filters) => void }) {
  const [draft, setDraft] = useState<Filters>(props.initial);
  return (
    <FilterForm label="Filter the audit log" onApply={() => props.onApply(Object.fromEntries(Object.entries(draft).map(([k, v]) => [k, v?.trim()])))}>
      {props.operator ? <TenantSelect name="tenant_id" tenants={props.tenants} value={draft.tenant_id ?? ''} onChange={(v) => setDraft({ ...draft, tenant_id: v })} system /> : null}
      {FIELDS.map(([name, label]) => (
        <label key={name}>
          {label}
          <input name={name} value={draft[name] ?? ''} onInput={(e) => setDraft({ ...draft, [name]: e.currentTarget.value })} />
        </label>
      ))}
    </FilterForm>
  );
}
