import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import type { components } from '../api/schema';
import { SEVERITY_NAMES, plural, when } from '../format';
import { ConfirmAction, FilterForm, Loading, Outcome, Pager, useLoad, usePager } from '../ui';

type Alert = components['schemas']['Alert'];
type AlertStatus = Alert['status'];
interface Filters {
  type?: string;
  status?: AlertStatus;
  /** OPEN and ACKNOWLEDGED: the default, so an acknowledged alert stays in view. */
  unresolved?: boolean;
  min_severity?: number;
  tenant_id?: string;
}

/** Alerts: filter by type, severity and status; acknowledge and close. Operators see every tenant and the system alerts. */
export function AlertsView({ scope }: { scope: 'customer' | 'operator' }) {
  const [filters, setFilters] = useState<Filters>({ unresolved: true });
  const [refresh, setRefresh] = useState(0);
  // The last action's outcome, outside the table: the refreshed list may no longer hold the row.
  const [outcome, setOutcome] = useState<{ result: ComponentChildren; error: string | null }>({ result: null, error: null });
  const pager = usePager([filters]);
  const page = useLoad(() => {
    const query = { ...filters, limit: 25, cursor: pager.cursor };
    return scope === 'customer'
      ? call(client.GET('/api/v1/customer/alerts', { params: { query } }))
      : call(client.GET('/api/v1/operator/alerts', { params: { query } }));
  }, [scope, filters, pager.cursor, refresh]);
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
      <AlertFilters operator={scope === 'operator'} initial={filters} onApply={setFilters} />
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

const UNRESOLVED = 'unresolved';

function AlertFilters(props: { operator: boolean; initial: Filters; onApply: (f: Filters) => void }) {
  const [type, setType] = useState(props.initial.type ?? '');
  const [status, setStatus] = useState<string>(props.initial.unresolved ? UNRESOLVED : (props.initial.status ?? ''));
  const [severity, setSeverity] = useState('');
  const [tenant, setTenant] = useState('');
  return (
    <FilterForm
      label="Filter alerts"
      onApply={() => {
        props.onApply({
          ...(type ? { type } : {}),
          ...(status === UNRESOLVED ? { unresolved: true } : status ? { status: status as AlertStatus } : {}),
          ...(severity ? { min_severity: Number(severity) } : {}),
          ...(props.operator && tenant.trim() ? { tenant_id: tenant.trim() } : {}),
        });
      }}
    >
      {props.operator ? (
        <label>
          Tenant (<code>__system__</code> for system alerts)
          <input name="tenant_id" value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} />
        </label>
      ) : null}
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
          <option value="">Any</option>
          <option>OPEN</option>
          <option>ACKNOWLEDGED</option>
          <option>CLOSED</option>
        </select>
      </label>
    </FilterForm>
  );
}
