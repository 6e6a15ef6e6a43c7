import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import { Loading, Pager, useLoad, usePager } from '../ui';
import { AlertsView } from './alerts';
import { AuditView } from './audit';
import { BrokerNodesView } from './broker-nodes';
import { CertificateTable } from './certificate-table';
import { CrlView } from './crl';
import { ExpiryChart } from './expiry-chart';
import { CertificateFilters } from './fleet';

/** The platform team's view: every tenant, with a tenant filter, plus system alerts (CRL_STALE) and the CRL. */
export function OperatorView({ tab }: { tab: string }) {
  switch (tab) {
    case 'alerts':
      return <AlertsView scope="operator" />;
    case 'audit':
      return <AuditView scope="operator" />;
    default:
      return <AllCertificates />;
  }
}

function AllCertificates() {
  const [filters, setFilters] = useState<Parameters<Parameters<typeof CertificateFilters>[0]['onApply']>[0]>({});
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
      <BrokerNodesView />
      <section aria-labelledby="all-certs-heading">
        <h2 id="all-certs-heading">Certificates</h2>
        <CertificateFilters withTenant onApply={setFilters} />
        <Loading loading={page.loading && !page.data} error={page.error} />
        {page.data ? (
          <>
            <CertificateTable caption={`${page.data.total} certificates`} certificates={page.data.certificates} showTenant />
            <Pager pager={pager} nextCursor={page.data.next_cursor} label="Certificate" />
          </>
        ) : null}
      </section>
    </>
  );
}
