import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import type { paths } from '../api/schema';
import { plural, when } from '../format';
import { navigate, routeHref } from '../router';
import { Loading, Pager, useLoad, usePager } from '../ui';
import { AlertsView } from './alerts';
import { AuditView } from './audit';
import { BrokerNodesView } from './broker-nodes';
import { CaTable, CasView } from './cas';
import { CertificateTable } from './certificate-table';
import { CrlView } from './crl';
import { ExpiryChart } from './expiry-chart';
import { CertificateFilters } from './fleet';

/** The platform team's view: every tenant, with a tenant filter, plus system alerts (CRL_STALE) and the CRL. */
export function OperatorView({ tab, query }: { tab: string; query: URLSearchParams }) {
  if (tab === 'cas' || tab.startsWith('cas/')) return <CaPage id={tab.startsWith('cas/') ? decodeURIComponent(tab.slice('cas/'.length)) : null} />;
  switch (tab) {
    case 'overview':
      return <FleetOverview />;
    case 'alerts':
      return <AlertsView scope="operator" />;
    case 'audit':
      return <AuditView scope="operator" />;
    default:
      // The filters are the URL (#/operator/certificates?tenant_id=&ca_id=&status=...): a link or a reload shows the same list.
      return (
        <AllCertificates
          key={query.toString()}
          initial={{
            tenant_id: query.get('tenant_id') ?? undefined,
            device_id: query.get('device_id') ?? undefined,
            status: (query.get('status') as CertificateQuery['status']) ?? undefined,
            expiring_within_days: query.get('expiring_within_days') ? Number(query.get('expiring_within_days')) : undefined,
            ca_id: query.get('ca_id') ?? undefined,
          }}
        />
      );
  }
}

function CaPage({ id }: { id: string | null }) {
  const tenants = useTenants();
  return <CasView id={id} tenants={tenants} />;
}

/** The tenants the picker offers: those the API knows (the fleet overview's counters). */
function useTenants() {
  const overview = useLoad(() => call(client.GET('/api/v1/operator/fleet-overview')), []);
  return overview.data?.tenants.map((t) => t.tenant_id) ?? [];
}

type CertificateQuery = NonNullable<paths['/api/v1/operator/certificates']['get']['parameters']['query']>;
type CertificateFilter = Pick<CertificateQuery, 'tenant_id' | 'device_id' | 'status' | 'expiring_within_days' | 'ca_id'>;

function AllCertificates({ initial }: { initial: CertificateFilter }) {
  const tenants = useTenants();
  const [filters] = useState<CertificateFilter>(Object.fromEntries(Object.entries(initial).filter(([, v]) => v)));
  const setFilters = (f: CertificateFilter) =>
    navigate('/operator/certificates', { tenant_id: f.tenant_id, device_id: f.device_id, status: f.status, expiring_within_days: f.expiring_within_days?.toString(), ca_id: f.ca_id });
  const pager = usePager([filters]);
  const page = useLoad(
    () => call(client.GET('/api/v1/operator/certificates', { params: { query: { ...filters, limit: 25, cursor: pager.cursor } } })),
    [filters, pager.cursor],
  );
  return (
    <>
      <h1>Certificates of every tenant</h1>
      <ExpiryChart scope="operator" tenant={filters.tenant_id} />
      <CrlView scope="operator" />
      <section aria-labelledby="all-certs-heading">
        <h2 id="all-certs-heading">Certificates</h2>
        {/* Not keyed by the tenant list: a remount when it arrives would drop what the operator already chose (the select's value is re-applied once its option exists). */}
        <CertificateFilters withTenant tenants={tenants} initial={filters} onApply={setFilters} />
        <Loading loading={page.loading && !page.data} error={page.error} />
        {page.data ? (
          <>
            <CertificateTable caption={plural(page.data.total, 'certificate')} certificates={page.data.certificates} showTenant />
            <Pager pager={pager} nextCursor={page.data.next_cursor} label="Certificate" />
          </>
        ) : null}
      </section>
    </>
  );
}

const ago = (seconds: number | null) =>
  seconds === null ? 'never' : `${seconds < 120 ? plural(seconds, 'second') : seconds < 7200 ? plural(Math.round(seconds / 60), 'minute') : plural(Math.round(seconds / 3600), 'hour')} ago`;

/** Operators at a glance: every tenant's counts, expiries per week for the next quarter, recent revocations, the CRL. */
function FleetOverview() {
  const overview = useLoad(() => call(client.GET('/api/v1/operator/fleet-overview')), []);
  const o = overview.data;
  return (
    <>
      <h1>Fleet overview</h1>
      <Loading loading={overview.loading && !o} error={overview.error} />
      {o ? (
        <>
          <p class="crl-age">
            CRL number <strong>{o.crl.crl_number}</strong>, published {ago(o.crl.age_seconds)}
            {o.crl.this_update ? ` (${when(o.crl.this_update)})` : ''}.
          </p>
          <OverviewCas />
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
                      <td data-label="Devices">{t.devices}</td>
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
