import { call, client } from '../api/client';
import type { paths } from '../api/schema';
import { plural, timeLeft, when } from '../format';
import { changedQuery, navigate, routeHref, urlPager, type QueryValues } from '../router';
import { Loading, Pager, useLoad } from '../ui';
import { AlertsView } from './alerts';
import { AuditView } from './audit';
import { BrokerNodesView } from './broker-nodes';
import { caHref, CaStatus, CaTable, CasView } from './cas';
import { CertificateTable } from './certificate-table';
import { CrlView } from './crl';
import { ExpiryChart } from './expiry-chart';
import { CertificateFilters, DeviceList, type CaOption } from './fleet';
import { useTenants } from './tenants';

/** The platform team's view: every tenant, with a tenant picker, plus system alerts (CRL_STALE), the CAs and their CRLs. */
export function OperatorView({ tab, query }: { tab: string; query: URLSearchParams }) {
  if (tab === 'cas' || tab.startsWith('cas/')) return <CaPage id={tab.startsWith('cas/') ? decodeURIComponent(tab.slice('cas/'.length)) : null} />;
  switch (tab) {
    case 'overview':
      return <FleetOverview />;
    case 'devices':
      return <AllDevices query={query} />;
    case 'alerts':
      return <AlertsView scope="operator" query={query} />;
    case 'audit':
      return <AuditView scope="operator" query={query} />;
    default:
      // The filters and the page are the URL (#/operator/certificates?tenant_id=&ca_id=&status=&cursor=...): a link or a reload shows the same list.
      return <AllCertificates query={query} />;
  }
}

function CaPage({ id }: { id: string | null }) {
  const tenants = useTenants();
  return <CasView id={id} tenants={tenants} />;
}

/** The issuing CAs an operator's pickers offer (roots sign no device certificate). */
function useIssuingCas(): CaOption[] {
  const cas = useLoad(() => call(client.GET('/api/v1/operator/cas')), []);
  return cas.data?.cas.filter((c) => c.kind !== 'root') ?? [];
}

/** Every tenant's devices, with the tenant fleet page's search and a tenant picker (GET /api/v1/operator/devices). */
function AllDevices({ query }: { query: URLSearchParams }) {
  const tenants = useTenants();
  const cas = useIssuingCas();
  const go = (changes: QueryValues) => navigate('/operator/devices', changedQuery(query, changes));
  return (
    <>
      <h1>Devices of every tenant</h1>
      <DeviceList scope="operator" query={query} go={go} tenants={tenants} cas={cas} />
    </>
  );
}

type CertificateQuery = NonNullable<paths['/api/v1/operator/certificates']['get']['parameters']['query']>;
type CertificateFilter = Pick<CertificateQuery, 'tenant_id' | 'device_id' | 'status' | 'expiring_within_days' | 'ca_id'>;

function AllCertificates({ query }: { query: URLSearchParams }) {
  const tenants = useTenants();
  const cas = useIssuingCas();
  const filters: CertificateFilter = Object.fromEntries(
    Object.entries({
      tenant_id: query.get('tenant_id') ?? undefined,
      device_id: query.get('device_id') ?? undefined,
      status: (query.get('status') as CertificateQuery['status']) ?? undefined,
      expiring_within_days: query.get('expiring_within_days') ? Number(query.get('expiring_within_days')) : undefined,
      ca_id: query.get('ca_id') ?? undefined,
    }).filter(([, v]) => v),
  );
  const setFilters = (f: CertificateFilter) =>
    navigate('/operator/certificates', { tenant_id: f.tenant_id, device_id: f.device_id, status: f.status, expiring_within_days: f.expiring_within_days, ca_id: f.ca_id });
  const pager = urlPager(query, 'cursor', (changes) => navigate('/operator/certificates', changedQuery(query, changes)));
  const page = useLoad(
    () => call(client.GET('/api/v1/operator/certificates', { params: { query: { ...filters, limit: 25, cursor: pager.cursor } } })),
    [JSON.stringify(filters), pager.cursor],
  );
  return (
    <>
      <h1>Certificates of every tenant</h1>
      <ExpiryChart scope="operator" tenant={filters.tenant_id} />
      <CrlView scope="operator" />
      <section aria-labelledby="all-certs-heading">
        <h2 id="all-certs-heading">Certificates</h2>
        {/* Keyed by the filters (a Back or a link re-reads them), not by the pickers' lists: their arrival keeps what the operator already chose. */}
        <CertificateFilters key={JSON.stringify(filters)} tenants={tenants} cas={cas} initial={filters} onApply={setFilters} />
        <Loading loading={page.loading && !page.data} error={page.error} />
        {page.data ? (
          <>
            <CertificateTable caption={plural(page.data.total, 'certificate')} certificates={page.data.certificates} showTenant cas={cas} linkCas />
            <Pager pager={pager} nextCursor={page.data.next_cursor} label="Certificate" />
          </>
        ) : null}
      </section>
    </>
  );
}

const ago = (seconds: number | null) =>
  seconds === null ? 'never' : `${seconds < 120 ? plural(seconds, 'second') : seconds < 7200 ? plural(Math.round(seconds / 60), 'minute') : plural(Math.round(seconds / 3600), 'hour')} ago`;

/** Operators at a glance: the CAs and each one's CRL, the broker nodes, every tenant's counts, expiries per week for the next quarter, recent revocations. */
function FleetOverview() {
  const overview = useLoad(() => call(client.GET('/api/v1/operator/fleet-overview')), []);
  const o = overview.data;
  return (
    <>
      <h1>Fleet overview</h1>
      <Loading loading={overview.loading && !o} error={overview.error} />
      {o ? (
        <>
          <OverviewCas />
          <CaCrls crls={o.crls} />
          <BrokerNodesView />
          <section aria-labelledby="tenants-heading">
            <h2 id="tenants-heading">Tenants</h2>
            <div class="overflow-auto stack-on-phone">
              <table class="striped">
                <caption>{plural(o.tenants.length, 'tenant')}</caption>
                <thead>
                  <tr>
                    <th scope="col">Tenant</th>
                    <th scope="col">Devices</th>
                    <th scope="col">Active</th>
                    <th scope="col">Revoked</th>
                    <th scope="col">Expired</th>
                  </tr>
                </thead>
                <tbody>
                  {o.tenants.map((t) => (
                    <tr key={t.tenant_id}>
                      <td data-label="Tenant">
                        <a href={routeHref('/operator/certificates', { tenant_id: t.tenant_id })}>{t.tenant_id}</a>
                      </td>
                      <td data-label="Devices">
                        <a href={routeHref('/operator/devices', { tenant_id: t.tenant_id })} aria-label={`${plural(t.devices, 'device')} of ${t.tenant_id}`}>
                          {t.devices}
                        </a>
                      </td>
                      <td data-label="Active">{t.certificates.ACTIVE}</td>
                      <td data-label="Revoked">{t.certificates.REVOKED}</td>
                      <td data-label="Expired">{t.certificates.EXPIRED}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <section aria-labelledby="weeks-heading">
            <h2 id="weeks-heading">Expiring per week, next quarter</h2>
            {o.overdue ? <p class="soon">{plural(o.overdue, 'certificate')} past expiry, not yet marked EXPIRED.</p> : null}
            <div class="overflow-auto stack-on-phone">
              <table class="striped">
                <caption>Active certificates expiring in each of the next {o.expiring_per_week.length} weeks</caption>
                <thead>
                  <tr>
                    <th scope="col">Week from</th>
                    <th scope="col">Certificates</th>
                  </tr>
                </thead>
                <tbody>
                  {o.expiring_per_week.map((w) => (
                    <tr key={w.week_start}>
                      <td data-label="Week from">{when(w.week_start).slice(0, 10)}</td>
                      <td data-label="Certificates">{w.certificates}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <section aria-labelledby="revocations-heading">
            <h2 id="revocations-heading">Recent revocations</h2>
            <div class="overflow-auto stack-on-phone">
              <table class="striped">
                <caption>The latest {plural(o.recent_revocations.length, 'revocation')}</caption>
                <thead>
                  <tr>
                    <th scope="col">Certificate</th>
                    <th scope="col">Tenant</th>
                    <th scope="col">Device</th>
                    <th scope="col">Revoked</th>
                    <th scope="col">Reason</th>
                  </tr>
                </thead>
                <tbody>
                  {o.recent_revocations.map((r) => (
                    <tr key={r.id}>
                      <td data-label="Certificate">{r.id}</td>
                      <td data-label="Tenant">{r.tenant_id}</td>
                      <td data-label="Device">{r.device_id}</td>
                      <td data-label="Revoked">{when(r.revoked_at)}</td>
                      <td data-label="Reason">{r.revoked_reason ?? '—'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
        </>
      ) : null}
    </>
  );
}

/** The Device CAs at a glance: status and expiry (each links to its page). */
function OverviewCas() {
  const cas = useLoad(() => call(client.GET('/api/v1/operator/cas')), []);
  return (
    <section aria-labelledby="overview-cas-heading">
      <h2 id="overview-cas-heading">Certificate authorities</h2>
      <Loading loading={cas.loading && !cas.data} error={cas.error} />
      {cas.data ? <CaTable compact cas={cas.data.cas} caption={`${plural(cas.data.cas.length, 'CA')}, with their expiry`} busy={cas.loading} /> : null}
    </section>
  );
}

type CaCrl = paths['/api/v1/operator/fleet-overview']['get']['responses'][200]['content']['application/json']['crls'][number];

/** Every published CA's CRL (its own number series): number, age, next update (past it: overdue), entries. */
function CaCrls({ crls }: { crls: CaCrl[] }) {
  const now = Date.now();
  return (
    <section aria-labelledby="crls-heading">
      <h2 id="crls-heading">CRLs</h2>
      <div class="overflow-auto stack-on-phone">
        <table class="striped ca-crls">
          <caption>{plural(crls.length, 'CRL')}, one per CA</caption>
          <thead>
            <tr>
              <th scope="col">CA</th>
              <th scope="col">Status</th>
              <th scope="col">CRL number</th>
              <th scope="col">Published</th>
              <th scope="col">Next update</th>
              <th scope="col">Entries</th>
            </tr>
          </thead>
          <tbody>
            {crls.length === 0 ? (
              <tr>
                <td colSpan={6}>No CA publishes a CRL.</td>
              </tr>
            ) : null}
            {crls.map((c) => {
              const overdue = c.next_update !== null && Date.parse(c.next_update) < now;
              return (
                <tr key={c.ca_id} data-ca={c.ca_id}>
                  <td data-label="CA" class="wrap">
                    <a href={caHref(c.ca_id)}>{c.subject}</a>
                    {c.kind === 'root' ? <small> (root)</small> : null}
                    {c.tenant_id ? <small> · tenant {c.tenant_id}</small> : null}
                  </td>
                  <td data-label="Status">
                    <CaStatus status={c.status} />
                  </td>
                  <td data-label="CRL number">{c.crl_number ?? 'none yet'}</td>
                  <td data-label="Published" title={c.this_update ? when(c.this_update) : undefined}>
                    {c.crl_number === null ? '—' : ago(c.age_seconds)}
                  </td>
                  <td data-label="Next update" class={overdue ? 'soon' : undefined}>
                    {c.next_update ? `${when(c.next_update)} (${overdue ? `overdue, ${timeLeft(c.next_update)}` : timeLeft(c.next_update)})` : '—'}
                  </td>
                  <td data-label="Entries">{c.entries ?? '—'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
