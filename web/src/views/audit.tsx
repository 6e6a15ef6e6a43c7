import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import { when } from '../format';
import { FilterForm, Loading, Pager, useLoad, usePager } from '../ui';

interface Filters {
  action?: string;
  target_type?: string;
  target_id?: string;
  actor?: string;
  tenant_id?: string;
}

const FIELDS = [
  ['action', 'Action'],
  ['target_type', 'Target type'],
  ['target_id', 'Target ID'],
  ['actor', 'Actor'],
] as const;

/** The audit log (GET /audit-events): newest first, filter by action, target and actor (and tenant for operators). */
export function AuditView({ scope }: { scope: 'customer' | 'operator' }) {
  const [filters, setFilters] = useState<Filters>({});
  const [draft, setDraft] = useState<Filters>({});
  const pager = usePager([filters]);
  const page = useLoad(() => {
    const query = { ...filters, limit: 50, cursor: pager.cursor };
    return scope === 'customer'
      ? call(client.GET('/api/v1/customer/audit-events', { params: { query } }))
      : call(client.GET('/api/v1/operator/audit-events', { params: { query } }));
  }, [scope, filters, pager.cursor]);
  const fields = scope === 'operator' ? ([['tenant_id', 'Tenant'], ...FIELDS] as const) : FIELDS;
  return (
    <section aria-labelledby="audit-heading">
      <h1 id="audit-heading">{scope === 'operator' ? 'Audit log of every tenant' : 'Audit log'}</h1>
      <FilterForm
        label="Filter the audit log"
        onApply={() => setFilters(Object.fromEntries(Object.entries(draft).filter(([, v]) => v && v.trim()).map(([k, v]) => [k, v!.trim()])))}
      >
        {fields.map(([name, label]) => (
          <label key={name}>
            {label}
            <input name={name} value={draft[name] ?? ''} onInput={(e) => setDraft({ ...draft, [name]: e.currentTarget.value })} />
          </label>
        ))}
      </FilterForm>
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
