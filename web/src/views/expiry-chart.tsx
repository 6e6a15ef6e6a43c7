import { call, client } from '../api/client';
import { Loading, useLoad } from '../ui';

/** How many ACTIVE certificates expire within 7, 30 and 90 days, as a bar chart (an SVG with a text equivalent). */
export function ExpiryChart({ scope, tenant, refresh }: { scope: 'customer' | 'operator'; tenant?: string; refresh?: number }) {
  const summary = useLoad(
    () =>
      scope === 'customer'
        ? call(client.GET('/api/v1/customer/expiry-summary'))
        : call(client.GET('/api/v1/operator/expiry-summary', { params: { query: tenant ? { tenant_id: tenant } : {} } })),
    [scope, tenant, refresh],
  );
  const windows = summary.data?.windows ?? [];
  const max = Math.max(1, ...windows.map((w) => w.certificates));
  const width = 320;
  const bar = 28;
  return (
    <section aria-labelledby="expiry-heading">
      <h2 id="expiry-heading">Expiring certificates</h2>
      <Loading loading={summary.loading && !summary.data} error={summary.error} />
      {summary.data ? (
        <figure>
          <svg role="img" aria-labelledby="expiry-caption" viewBox={`0 0 ${width + 150} ${windows.length * (bar + 12)}`} class="chart">
            {windows.map((w, i) => {
              const length = Math.round((w.certificates / max) * width);
              const y = i * (bar + 12);
              return (
                <g key={w.days}>
                  <text x="0" y={y + bar * 0.7} class="chart-label">
                    {w.days} days
                  </text>
                  <rect x="70" y={y} width={Math.max(2, length)} height={bar} class={`chart-bar bar-${w.days}`} />
                  <text x={78 + Math.max(2, length)} y={y + bar * 0.7} class="chart-value">
                    {w.certificates}
                  </text>
                </g>
              );
            })}
          </svg>
          <figcaption id="expiry-caption">
            {windows.map((w) => `${w.certificates} within ${w.days} days`).join(', ')} (active certificates, cumulative)
          </figcaption>
        </figure>
      ) : null}
    </section>
  );
}
