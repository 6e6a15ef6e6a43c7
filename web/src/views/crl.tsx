import { call, client } from '../api/client';
import { when } from '../format';
import { Loading, useLoad } from '../ui';

/** The latest CRL: number, entries, this and next update, and where to download it. */
export function CrlView({ scope }: { scope: 'customer' | 'operator' }) {
  const status = useLoad(() => (scope === 'customer' ? call(client.GET('/api/v1/customer/crl/status')) : call(client.GET('/api/v1/operator/crl/status'))), [scope]);
  const s = status.data;
  return (
    <section aria-labelledby="crl-heading">
      <h1 id="crl-heading">Certificate revocation list</h1>
      <Loading loading={status.loading} error={status.error} />
      {s ? (
        <>
          <dl class="facts">
            <dt>CRL number</dt>
            <dd>{s.crl_number}</dd>
            <dt>Entries</dt>
            <dd>{s.entries ?? '—'}</dd>
            <dt>This update</dt>
            <dd>{when(s.this_update)}</dd>
            <dt>Next update</dt>
            <dd>{when(s.next_update)}</dd>
            <dt>Size</dt>
            <dd>{s.bytes === null ? '—' : `${s.bytes} bytes`}</dd>
            <dt>SHA-256</dt>
            <dd>
              <code class="wrap">{s.sha256 ?? '—'}</code>
            </dd>
          </dl>
          <p>
            <a href={s.pem_url} download="device-crl.pem" role="button">
              Download CRL (PEM)
            </a>{' '}
            <a href={s.der_url} download="device-crl.crl" role="button" class="secondary">
              Download CRL (DER)
            </a>
          </p>
          <p>
            <small>Every tenant's revocations are on the one CRL of the Device CA; devices and the broker fetch it from the DER URL.</small>
          </p>
        </>
      ) : null}
    </section>
  );
}
