import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import type { components } from '../api/schema';
import { SEVERITY_NAMES, plural, when } from '../format';
import { changedQuery, navigate, urlPager } from '../router';
import { ConfirmAction, FilterForm, Loading, Outcome, Pager, useLoad } from '../ui';
import { TenantSelect, useTenants } from './tenants';

type Alert = components['schemas']['Alert'];
type AlertStatus = Alert['status'];

/** The status filter's default (OPEN and ACKNOWLEDGED), so an acknowledged alert stays in view; `any` shows every status. */
const UNRESOLVED = 'unresolved';
const ANY = 'any';

/** The filters in the URL (#/alerts?type=CERT_EXPIRING&min_severity=4&status=any): a link or a reload shows the same alerts, on the same page. */
const FILTER_KEYS = ['tenant_id', 'type', 'min_severity', 'status'] as const;
type Filters = Partial<Record<(typeof FILTER_KEYS)[number], string>>;
const filtersOf = (query: URLSearchParams): Filters => Object.fromEntries(FILTER_KEYS.map((k) => [k, query.get(k) ?? undefined]).filter(([, v]) => v));

/** Alerts: filter by type, severity and status; acknowledge and close. Operators see every tenant and the system alerts. */
export function AlertsView({ scope, query }: { scope: 'customer' | 'operator'; query: URLSearchParams }) {
  const path = scope === 'operator' ? '/operator/alerts' : '/alerts';
  const filters = filtersOf(query);
  const [refresh, setRefresh] = useState(0);
  // The last action's outcome, outside the table: the refreshed list may no longer hold the row.
  const [outcome, setOutcome] = useState<{ result: ComponentChildren; error: string | null }>({ result: null, error: null });
  const pager = urlPager(query, 'cursor', (changes) => navigate(path, changedQuery(query, changes)));
  const tenants = useTenants(scope === 'operator');
  const page = useLoad(() => {
    const status = filters.status ?? UNRESOLVED;
    const q = {
      type: filters.type,
      min_severity: filters.min_severity ? Number(filters.min_severity) : undefined,
      ...(status === UNRESOLVED ? { unresolved: true } : status === ANY ? {} : { status: status as AlertStatus }),
      limit: 25,
      cursor: pager.cursor,
    };
    return scope === 'customer'
      ? call(client.GET('/api/v1/customer/alerts', { params: { query: q } }))
      : call(client.GET('/api/v1/operator/alerts', { params: { query: { ...q, tenant_id: filters.tenant_id } } }));
  }, [scope, JSON.stringify(filters), pager.cursor, refresh]);
  const act = async (a: Alert, verb: 'acknowledge' | 'close') => {
    const params = { params: { path: { id: a.id } }, body: {} };
    if (scope === 'customer') {
      await call(verb === 'acknowledge' ? client.POST('/api/v1/customer/alerts/{id}/acknowledge', params) : client.POST('/api/v1/customer/alerts/{id}/close', params));
    } else {
      await call(verb === 'acknowledge' ? client.POST('/api/v1/operator/alerts/{id}/acknowledge', params) : client.POST('/api/v1/operator/alerts/{id}/close', params));
    }
    setRefresh((n) => n + 1);
    return `Alert ${a.id} ${verb === 'acknowledge' ? 'acknowledged' : 'closed'}.`;
  };
  return (
    <section aria-labelledby="alerts-heading">
      <h1 id="alerts-heading">{scope === 'operator' ? 'Alerts of every tenant' : 'Alerts'}</h1>
      <AlertFilters
        key={JSON.stringify(filters)}
        operator={scope === 'operator'}
        tenants={tenants}
        initial={filters}
        onApply={(f) => navigate(path, { ...f, status: f.status === UNRESOLVED ? undefined : f.status })}
      />
      <Outcome result={outcome.result} error={outcome.error} />
      <Loading loading={page.loading && !page.data} error={page.error} />
      {page.data ? (
        <>
          <div class="overflow-auto stack-on-phone" tabIndex={0} role="region" aria-label="Alerts">
            <table class="striped" aria-busy={page.loading}>
              <caption>{plural(page.data.total, 'alert')}</caption>
              <thead>
                <tr>
                  <th scope="col">ID</th>
                  {scope === 'operator' ? <th scope="col">Tenant</th> : null}
                  <th scope="col">Type</th>
                  <th scope="col">Severity</th>
                  <th scope="col">Status</th>
                  <th scope="col">Summary</th>
                  <th scope="col">Raised</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {page.data.alerts.length === 0 ? (
                  <tr>
                    <td colSpan={8}>No alerts match.</td>
                  </tr>
                ) : null}
                {page.data.alerts.map((a) => (
                  <tr key={a.id}>
                    <td data-label="ID">{a.id}</td>
                    {scope === 'operator' ? <td data-label="Tenant">{a.tenant_id}</td> : null}
                    <td data-label="Type">{a.alert_type}</td>
                    <td data-label="Severity">
                      <span class={`badge severity-${a.severity}`}>
                        {a.severity} {SEVERITY_NAMES[a.severity] ?? ''}
                      </span>
                    </td>
                    <td data-label="Status">{a.status}</td>
                    <td data-label="Summary">{a.summary}</td>
                    <td data-label="Raised">{when(a.created_at)}</td>
                    <td data-label="Actions">
                      <ConfirmAction
                        label="Acknowledge"
                        ariaLabel={`Acknowledge alert ${a.id}`}
                        secondary
                        disabled={a.status !== 'OPEN'}
                        question={<p>{a.summary}</p>}
                        run={() => act(a, 'acknowledge')}
                        onOutcome={setOutcome}
                      />{' '}
                      <ConfirmAction
                        label="Close"
                        ariaLabel={`Close alert ${a.id}`}
                        secondary
                        disabled={a.status === 'CLOSED'}
                        question={<p>{a.summary}</p>}
                        run={() => act(a, 'close')}
                        onOutcome={setOutcome}
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={page.data.next_cursor} label="Alert" />
        </>
      ) : null}
    </section>
  );
}

function AlertFilters(props: { operator: boolean; tenants: string[]; initial: Filters; onApply: (f: Filters) => void }) {
  const [type, setType] = useState(props.initial.type ?? '');
  const [status, setStatus] = useState<string>(props.initial.status ?? UNRESOLVED);
  const [severity, setSeverity] = useState(props.initial.min_severity ?? '');
  const [tenant, setTenant] = useState(props.initial.tenant_id ?? '');
  return (
    <FilterForm label="Filter alerts" onApply={() => props.onApply({ ...(props.operator ? { tenant_id: tenant } : {}), type, min_severity: severity, status })}>
      {props.operator ? <TenantSelect name="tenant_id" tenants={props.tenants} value={tenant} onChange={setTenant} system /> : null}
      <label>
        Type
        <select name="type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
          <option value="">Any</option>
          <option>CERT_EXPIRING</option>
          <option>CERT_EXPIRED</option>
          {props.operator ? (
            <>
              <option>CRL_STALE</option>
              <option>BROKER_RELOAD_FAILING</option>
              <option>CA_EXPIRING</option>
              <option>CRL_RECONCILED</option>
            </>
          ) : null}
        </select>
      </label>
      <label>
        Minimum severity
        <select name="min_severity" value={severity} onChange={(e) => setSeverity(e.currentTarget.value)}>
          <option value="">Any</option>
          <option value="3">3 medium</option>
          <option value="4">4 high</option>
          <option value="5">5 critical</option>
        </select>
      </label>
      <label>
        Status
        <select name="status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value={UNRESOLVED}>Open or acknowledged</option>
          <option value={ANY}>Any</option>
          <option>OPEN</option>
          <option>ACKNOWLEDGED</option>
          <option>CLOSED</option>
        </select>
      </label>
    </FilterForm>
  );
}
