import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, client } from '../api/client';
import type { components } from '../api/schema';
import { when } from '../format';
import { ActionForm, FilterForm, Loading, Pager, useLoad, usePager } from '../ui';
import { CertificateTable } from './certificate-table';
import { DeviceActions } from './device-actions';
import { ExpiryChart } from './expiry-chart';

type Status = components['schemas']['Certificate']['status'];

/** The customer's fleet: expiry overview, devices, certificates, and one device's actions. */
export function FleetView() {
  const [refresh, setRefresh] = useState(0);
  const [device, setDevice] = useState<string | null>(null);
  const changed = () => setRefresh((n) => n + 1);
  return (
    <>
      <h1>Devices &amp; certificates</h1>
      <ExpiryChart scope="customer" refresh={refresh} />
      {device ? <DevicePanel key={device} deviceId={device} refresh={refresh} onChanged={changed} onClose={() => setDevice(null)} /> : null}
      <Devices refresh={refresh} onChanged={changed} onManage={setDevice} />
      <Certificates refresh={refresh} onManage={setDevice} />
    </>
  );
}

function Devices(props: { refresh: number; onChanged: () => void; onManage: (id: string) => void }) {
  const [deviceId, setDeviceId] = useState('');
  const [siteId, setSiteId] = useState('');
  const pager = usePager([]);
  const devices = useLoad(
    () => call(client.GET('/api/v1/customer/devices', { params: { query: { limit: 20, cursor: pager.cursor } } })),
    [pager.cursor, props.refresh],
  );
  return (
    <section aria-labelledby="devices-heading">
      <h2 id="devices-heading">Devices</h2>
      <details>
        <summary role="button" class="secondary outline">
          Register a device
        </summary>
        <ActionForm
          label="Register device"
          question={() => (
            <p>
              Register device <strong>{deviceId}</strong>
              {siteId ? ` at site ${siteId}` : ''}?
            </p>
          )}
          run={async () => {
            const { device } = await call(
              client.POST('/api/v1/customer/devices', { body: { device_id: deviceId.trim(), site_id: siteId.trim() || null } }),
            );
            props.onChanged();
            return `Device ${device.device_id} registered.`;
          }}
        >
          <div class="grid">
            <label>
              Device ID
              <input name="device_id" required maxLength={128} pattern="[A-Za-z0-9][A-Za-z0-9._:\-]*" value={deviceId} onInput={(e) => setDeviceId(e.currentTarget.value)} />
            </label>
            <label>
              Site (optional)
              <input name="site_id" maxLength={128} value={siteId} onInput={(e) => setSiteId(e.currentTarget.value)} />
            </label>
          </div>
        </ActionForm>
      </details>
      <Loading loading={devices.loading && !devices.data} error={devices.error} />
      {devices.data ? (
        <>
          <div class="overflow-auto">
            <table class="striped">
              <caption>{devices.data.total} devices</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Site</th>
                  <th scope="col">Registered</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {devices.data.devices.map((d) => (
                  <tr key={d.device_id}>
                    <td>{d.device_id}</td>
                    <td>{d.site_id ?? '—'}</td>
                    <td>{when(d.created_at)}</td>
                    <td>
                      <button type="button" class="secondary small" aria-label={`Manage device ${d.device_id}`} onClick={() => props.onManage(d.device_id)}>
                        Manage
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={devices.data.next_cursor} label="Device" />
        </>
      ) : null}
    </section>
  );
}

function Certificates(props: { refresh: number; onManage: (id: string) => void }) {
  const [filters, setFilters] = useState<{ device_id?: string; status?: Status; expiring_within_days?: number }>({});
  const pager = usePager([filters]);
  const page = useLoad(
    () => call(client.GET('/api/v1/customer/certificates', { params: { query: { ...filters, limit: 25, cursor: pager.cursor } } })),
    [filters, pager.cursor, props.refresh],
  );
  return (
    <section aria-labelledby="certs-heading">
      <h2 id="certs-heading">Certificates</h2>
      <CertificateFilters onApply={setFilters} />
      <Loading loading={page.loading && !page.data} error={page.error} />
      {page.data ? (
        <>
          <CertificateTable
            caption={`${page.data.total} certificates`}
            certificates={page.data.certificates}
            actions={(c) => (
              <button type="button" class="secondary small" aria-label={`Manage device ${c.device_id} (certificate ${c.id})`} onClick={() => props.onManage(c.device_id)}>
                Manage
              </button>
            )}
          />
          <Pager pager={pager} nextCursor={page.data.next_cursor} label="Certificate" />
        </>
      ) : null}
    </section>
  );
}

export function CertificateFilters(props: { withTenant?: boolean; onApply: (f: { device_id?: string; status?: Status; expiring_within_days?: number; tenant_id?: string }) => void }) {
  const [tenant, setTenant] = useState('');
  const [device, setDevice] = useState('');
  const [status, setStatus] = useState('');
  const [expiring, setExpiring] = useState('');
  return (
    <FilterForm
      label="Filter certificates"
      onApply={() => {
        props.onApply({
          ...(props.withTenant && tenant.trim() ? { tenant_id: tenant.trim() } : {}),
          ...(device.trim() ? { device_id: device.trim() } : {}),
          ...(status ? { status: status as Status } : {}),
          ...(expiring ? { expiring_within_days: Number(expiring) } : {}),
        });
      }}
    >
      {props.withTenant ? (
        <label>
          Tenant
          <input name="tenant_id" value={tenant} onInput={(e) => setTenant(e.currentTarget.value)} />
        </label>
      ) : null}
      <label>
        Device ID
        <input name="device_id" type="search" value={device} onInput={(e) => setDevice(e.currentTarget.value)} />
      </label>
      <label>
        Status
        <select name="status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="">Any</option>
          <option>ACTIVE</option>
          <option>REVOKED</option>
          <option>EXPIRED</option>
        </select>
      </label>
      <label>
        Expiring within
        <select name="expiring" value={expiring} onChange={(e) => setExpiring(e.currentTarget.value)}>
          <option value="">Any time</option>
          <option value="7">7 days</option>
          <option value="30">30 days</option>
          <option value="90">90 days</option>
        </select>
      </label>
    </FilterForm>
  );
}

function DevicePanel(props: { deviceId: string; refresh: number; onChanged: () => void; onClose: () => void }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [props.deviceId]);
  const id = props.deviceId;
  const certs = useLoad(
    () => call(client.GET('/api/v1/customer/certificates', { params: { query: { device_id: id, limit: 50 } } })),
    [id, props.refresh],
  );
  // Old certificates of a pending rotation carry scheduled_revoke_at: only then is there a rotation to read
  // (read after the certificates, so a rotation confirmed a moment ago is not asked for).
  const pending = certs.data?.certificates.some((c) => c.scheduled_revoke_at !== null) ?? false;
  const rotation = useLoad(async () => {
    if (!pending) return null;
    try {
      return await call(client.GET('/api/v1/customer/devices/{device_id}/certificates/rotation', { params: { path: { device_id: id } } }));
    } catch (e) {
      if (e instanceof ApiError && e.code === 'NO_PENDING_ROTATION') return null;
      throw e;
    }
  }, [id, certs.data]);
  return (
    <article class="device-panel" aria-labelledby="device-heading">
      <header>
        <h2 id="device-heading" ref={heading} tabIndex={-1}>
          Device {id}
        </h2>
        <button type="button" class="secondary outline small" onClick={props.onClose}>
          Close device {id}
        </button>
      </header>
      <h3>Rotation</h3>
      <Loading loading={rotation.loading && rotation.data === null && !rotation.error} error={rotation.error} />
      {rotation.data ? (
        <p class="rotation-state">
          Rotation pending: new certificate {rotation.data.new_certificate.id}; the old certificate(s){' '}
          {rotation.data.old_certificates.map((o) => o.id).join(', ')} are revoked at {when(rotation.data.next_revoke_at)} unless confirmed or cancelled sooner.
        </p>
      ) : rotation.loading ? null : (
        <p class="rotation-state">No rotation pending.</p>
      )}
      <DeviceActions deviceId={id} rotation={rotation.data} certificates={certs.data?.certificates ?? []} onChanged={props.onChanged} />
      <Loading loading={certs.loading && !certs.data} error={certs.error} />
      {certs.data ? <CertificateTable caption={`Certificates of ${id}`} certificates={certs.data.certificates} /> : null}
    </article>
  );
}
