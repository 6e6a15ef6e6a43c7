import { call, client } from '../api/client';
import { plural, when } from '../format';
import { Loading, useLoad } from '../ui';

const STATE_LABEL: Record<string, string> = {
  ok: 'ok',
  lagging: 'lagging',
  silent: 'not reporting',
  enforcement_failed: 'does not enforce the CRL',
};

/** Broker nodes and their agents (`certfleet broker-agent`): CRL applied, last enforcement check, lag. */
export function BrokerNodesView() {
  const nodes = useLoad(() => call(client.GET('/api/v1/operator/broker-nodes')), []);
  const d = nodes.data;
  return (
    <section aria-labelledby="broker-nodes-heading">
      <h2 id="broker-nodes-heading">Broker nodes</h2>
      <Loading loading={nodes.loading && !d} error={nodes.error} />
      {d ? (
        d.nodes.length === 0 ? (
          <p>
            <small>No broker agent has reported yet (see the README, Broker fleet).</small>
          </p>
        ) : (
          <div class="overflow-auto stack-on-phone">
            <table class="striped">
              <caption>
                {plural(d.nodes.length, 'node')}; latest CRL number {d.latest_crl_number ?? '—'}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">Kind</th>
                  <th scope="col">State</th>
                  <th scope="col">CRL applied</th>
                  <th scope="col">Lag</th>
                  <th scope="col">Applied</th>
                  <th scope="col">Last check</th>
                  <th scope="col">Reported</th>
                </tr>
              </thead>
              <tbody>
                {d.nodes.map((n) => (
                  <tr key={n.node} data-state={n.state}>
                    <td data-label="Node">
                      <strong>{n.node}</strong>
                    </td>
                    <td data-label="Kind">{n.kind}</td>
                    <td data-label="State">{STATE_LABEL[n.state] ?? n.state}</td>
                    <td data-label="CRL applied">{n.crl_number ?? '—'}</td>
                    <td data-label="Lag">{n.lag_seconds === 0 ? 'none' : `${n.lag_seconds} s`}</td>
                    <td data-label="Applied">{n.applied_at ? when(n.applied_at) : '—'}</td>
                    <td data-label="Last check" title={n.last_check_detail ?? undefined}>
                      {n.last_check_result ? `${n.last_check_result}, ${when(n.last_check_at!)}` : '—'}
                    </td>
                    <td data-label="Reported">{when(n.reported_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )
      ) : null}
    </section>
  );
}
