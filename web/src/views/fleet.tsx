import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, client } from '../api/client';
import type { components, paths } from '../api/schema';
import { navigate, routeHref } from '../router';
import { daysLeft, plural, timeLeft, when } from '../format';
import { ActionForm, FilterForm, Loading, Pager, useLoad, usePager } from '../ui';
import { CertificateTable } from './certificate-table';
import { DeviceActions } from './device-actions';
import { ExpiryChart } from './expiry-chart';

type Status = components['schemas']['Certificate']['status'];
type DeviceSummary = components['schemas']['DeviceSummary'];
type DeviceQuery = NonNullable<paths['/api/v1/customer/devices']['get']['parameters']['query']>;

/** The device search in the URL (#/fleet?...): a link or a reload shows the same devices and the same open device. */
const SEARCH_KEYS = ['id_prefix', 'site_id', 'certificate_status', 'expiring_within_days', 'rotation', 'ca_id', 'sort'] as const;
type Search = Partial<Record<(typeof SEARCH_KEYS)[number] | 'device', string>>;
const searchOf = (query: URLSearchParams): Search => Object.fromEntries([...SEARCH_KEYS, 'device'].map((k) => [k, query.get(k) ?? undefined]).filter(([, v]) => v));

/** The customer's fleet: expiry overview, device search, certificates, and one device's actions. */
export function FleetView({ query }: { query: URLSearchParams }) {
  const [refresh, setRefresh] = useState(0);
  const search = searchOf(query);
  const device = search.device ?? null;
  const changed = () => setRefresh((n) => n + 1);
  const go = (next: Search) => navigate('/fleet', next);
  return (
    <>
      <h1>Devices &amp; certificates</h1>
      <ExpiryChart scope="customer" refresh={refresh} />
      {device ? <DevicePanel key={device} deviceId={device} refresh={refresh} onChanged={changed} onClose={() => go({ ...search, device: undefined })} /> : null}
      <Devices search={search} refresh={refresh} onChanged={changed} onSearch={(s) => go({ ...s, device: search.device })} onManage={(id) => go({ ...search, device: id })} />
      <Certificates refresh={refresh} onManage={(id) => go({ ...search, device: id })} />
    </>
  );
}

const CERT_STATUS_LABEL: Record<DeviceSummary['certificate_status'], string> = { ACTIVE: 'active', EXPIRED: 'expired', REVOKED: 'revoked', NONE: 'no certificate' };

function Devices(props: { search: Search; refresh: number; onChanged: () => void; onSearch: (s: Search) => void; onManage: (id: string) => void }) {
  const { search } = props;
  const pager = usePager([JSON.stringify({ ...search, device: undefined })]);
  const devices = useLoad(() => {
    const query: DeviceQuery = {
      limit: 25,
      cursor: pager.cursor,
      id_prefix: search.id_prefix,
      site_id: search.site_id,
      certificate_status: search.certificate_status as DeviceQuery['certificate_status'],
      expiring_within_days: search.expiring_within_days ? Number(search.expiring_within_days) : undefined,
      rotation: search.rotation as DeviceQuery['rotation'],
      sort: search.sort as DeviceQuery['sort'],
      ca_id: search.ca_id,
    };
    return call(client.GET('/api/v1/customer/devices', { params: { query } }));
  }, [pager.cursor, props.refresh, JSON.stringify({ ...search, device: undefined })]);
  return (
    <section aria-labelledby="devices-heading">
      <h2 id="devices-heading">Devices</h2>
      <RegisterDevice onChanged={props.onChanged} onRegistered={props.onManage} />
      <DeviceSearch key={JSON.stringify(search)} search={search} onApply={props.onSearch} />
      <Loading loading={devices.loading && !devices.data} error={devices.error} />
      {devices.data ? (
        <>
          <div class="overflow-auto stack-on-phone">
            <table class="striped">
              <caption>{devices.data.total_capped ? `more than ${devices.data.total.toLocaleString('en-US')} devices` : plural(devices.data.total, 'device')}</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Site</th>
                  <th scope="col">Certificate</th>
                  <th scope="col">Next expiry</th>
                  <th scope="col">Rotation</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {devices.data.devices.length === 0 ? (
                  <tr>
                    <td colSpan={6}>No devices match.</td>
                  </tr>
                ) : null}
                {devices.data.devices.map((d) => (
                  <tr key={d.device_id}>
                    <td data-label="Device">{d.device_id}</td>
                    <td data-label="Site">{d.site_id ?? '—'}</td>
                    <td data-label="Certificate">
                      <span class={`badge status-${d.certificate_status.toLowerCase()}`}>{CERT_STATUS_LABEL[d.certificate_status]}</span>
                    </td>
                    <td data-label="Next expiry" class={d.next_expiry && daysLeft(d.next_expiry) <= 30 ? 'soon' : undefined}>
                      {d.next_expiry ? `${when(d.next_expiry)} (${timeLeft(d.next_expiry)})` : '—'}
                    </td>
                    <td data-label="Rotation">{d.rotation_pending ? 'pending' : '—'}</td>
                    <td data-label="Actions">
                      <a href={routeHref('/fleet', { ...search, device: d.device_id })} role="button" class="secondary small" aria-label={`Manage device ${d.device_id}`}>
                        Manage
                      </a>
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

function DeviceSearch(props: { search: Search; onApply: (s: Search) => void }) {
  const [s, setS] = useState<Search>(props.search);
  const field = (k: keyof Search) => ({ name: k, value: s[k] ?? '', onInput: (e: Event) => setS({ ...s, [k]: (e.currentTarget as HTMLInputElement).value }) });
  return (
    <FilterForm label="Search devices" onApply={() => props.onApply({ ...s, id_prefix: s.id_prefix?.trim(), site_id: s.site_id?.trim(), ca_id: s.ca_id?.trim() })}>
      <label>
        Device ID starts with
        <input type="search" pattern="[A-Za-z0-9][A-Za-z0-9._:\-]*" maxLength={128} {...field('id_prefix')} />
      </label>
      <label>
        Site
        <input {...field('site_id')} maxLength={128} />
      </label>
      <label>
        Certificate
        <select {...field('certificate_status')} onChange={(e) => setS({ ...s, certificate_status: e.currentTarget.value })}>
          <option value="">Any</option>
          <option value="ACTIVE">active</option>
          <option value="EXPIRED">expired</option>
          <option value="REVOKED">revoked</option>
          <option value="NONE">no certificate</option>
        </select>
      </label>
      <label>
        Expiring within
        <select {...field('expiring_within_days')} onChange={(e) => setS({ ...s, expiring_within_days: e.currentTarget.value })}>
          <option value="">Any time</option>
          <option value="7">7 days</option>
          <option value="30">30 days</option>
          <option value="90">90 days</option>
        </select>
      </label>
      <label>
        Rotation
        <select {...field('rotation')} onChange={(e) => setS({ ...s, rotation: e.currentTarget.value })}>
          <option value="">Any</option>
          <option value="pending">pending</option>
          <option value="none">none pending</option>
        </select>
      </label>
      <label>
        Issuing CA
        <input type="search" pattern="ca_[0-9a-f]{1,32}" maxLength={35} placeholder="ca_…" title="A CA id (ca_…): the devices that still hold an active certificate it signed" {...field('ca_id')} />
      </label>
      <label>
        Sort by
        <select {...field('sort')} onChange={(e) => setS({ ...s, sort: e.currentTarget.value })}>
          <option value="">Device ID</option>
          <option value="expiry">Soonest expiry</option>
        </select>
      </label>
    </FilterForm>
  );
}

function RegisterDevice(props: { onChanged: () => void; onRegistered: (id: string) => void }) {
  const [deviceId, setDeviceId] = useState('');
  const [siteId, setSiteId] = useState('');
  return (
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
          const { device } = await call(client.POST('/api/v1/customer/devices', { body: { device_id: deviceId.trim(), site_id: siteId.trim() || null } }));
          props.onChanged();
          return (
            <>
              Device {device.device_id} registered. <a href={routeHref('/fleet', { device: device.device_id })}>Open device {device.device_id}</a>
            </>
          );
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
            caption={plural(page.data.total, 'certificate')}
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

type CertificateFilter = { device_id?: string; status?: Status; expiring_within_days?: number; tenant_id?: string; ca_id?: string };

/** Certificate filters; `withTenant` (operators) adds the tenant picker and the issuing CA. */
export function CertificateFilters(props: { withTenant?: boolean; tenants?: string[]; initial?: CertificateFilter; onApply: (f: CertificateFilter) => void }) {
  const initial = props.initial ?? {};
  const [tenant, setTenant] = useState(initial.tenant_id ?? '');
  const [device, setDevice] = useState(initial.device_id ?? '');
  const [status, setStatus] = useState<string>(initial.status ?? '');
  const [expiring, setExpiring] = useState(initial.expiring_within_days ? String(initial.expiring_within_days) : '');
  const [caId, setCaId] = useState(initial.ca_id ?? '');
  return (
    <FilterForm
      label="Filter certificates"
      onApply={() => {
        props.onApply({
          ...(props.withTenant && tenant.trim() ? { tenant_id: tenant.trim() } : {}),
          ...(device.trim() ? { device_id: device.trim() } : {}),
          ...(status ? { status: status as Status } : {}),
          ...(expiring ? { expiring_within_days: Number(expiring) } : {}),
          ...(props.withTenant && caId.trim() ? { ca_id: caId.trim() } : {}),
        });
      }}
    >
      {props.withTenant ? (
        <label>
          Tenant
          <select name="tenant_id" value={tenant} onChange={(e) => setTenant(e.currentTarget.value)}>
            <option value="">Every tenant</option>
            {(props.tenants ?? []).map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
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
      {props.withTenant ? (
        <label>
          Issuing CA (id)
          <input name="ca_id" type="search" pattern="ca_[0-9a-f]{1,32}" placeholder="ca_…" value={caId} onInput={(e) => setCaId(e.currentTarget.value)} />
        </label>
      ) : null}
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
          Rotation pending: new certificate {rotation.data.new_certificate.id};{' '}
          {rotation.data.old_certificates.length === 1
            ? `the old certificate ${rotation.data.old_certificates[0].id} is`
            : `the old certificates ${rotation.data.old_certificates.map((o) => o.id).join(', ')} are`}{' '}
          revoked at {when(rotation.data.next_revoke_at)} unless confirmed or cancelled sooner.
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
