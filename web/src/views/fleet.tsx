import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, client } from '../api/client';
import type { components, paths } from '../api/schema';
import { changedQuery, navigate, routeHref, urlPager, type QueryValues } from '../router';
import { daysLeft, plural, timeLeft, when } from '../format';
import { ActionForm, FilterForm, Loading, Outcome, Pager, useLoad, type ActionOutcome } from '../ui';
import { CertificateTable } from './certificate-table';
import { DeviceActions } from './device-actions';
import { ExpiryChart } from './expiry-chart';
import { TenantSelect } from './tenants';

type Status = components['schemas']['Certificate']['status'];
type DeviceSummary = components['schemas']['DeviceSummary'];
type DeviceQuery = NonNullable<paths['/api/v1/operator/devices']['get']['parameters']['query']>;

/** A CA a picker offers (the customer's GET /cas, or the operator's issuing CAs). */
export interface CaOption {
  id: string;
  subject: string;
  status: string;
  active_certificates: number;
}

/**
 * The device search in the URL (#/fleet?id_prefix=...&cursor=...): a link or a reload shows the
 * same devices, on the same page, and the same open device (`device`). The certificate list's
 * filters and page have keys of their own (cert_…).
 */
const SEARCH_KEYS = ['tenant_id', 'id_prefix', 'site_id', 'certificate_status', 'expiring_within_days', 'rotation', 'ca_id', 'sort'] as const;
type Search = Partial<Record<(typeof SEARCH_KEYS)[number], string>>;
const searchOf = (query: URLSearchParams): Search => Object.fromEntries(SEARCH_KEYS.map((k) => [k, query.get(k) ?? undefined]).filter(([, v]) => v));
const CERT_KEYS = { device_id: 'cert_device_id', status: 'cert_status', expiring_within_days: 'cert_expiring_within_days', ca_id: 'cert_ca_id' } as const;

type Where = 'register' | 'device';

/** The customer's fleet: expiry overview, device search, certificates, and one device's actions. */
export function FleetView({ query }: { query: URLSearchParams }) {
  const [refresh, setRefresh] = useState(0);
  const device = query.get('device');
  const changed = () => setRefresh((n) => n + 1);
  const go = (changes: QueryValues) => navigate('/fleet', changedQuery(query, changes));
  // One outcome for the page's actions (registering a device, the open device's actions): the latest replaces the one before.
  const [outcome, setOutcome] = useState<{ where: Where; outcome: ActionOutcome } | null>(null);
  const report = (where: Where) => (o: ActionOutcome) => setOutcome({ where, outcome: o });
  const shown = (where: Where) => (outcome?.where === where ? outcome.outcome : { result: null, error: null });
  // Another device opened: the previous device's outcome is not about it.
  useEffect(() => setOutcome((o) => (o?.where === 'device' ? null : o)), [device]);
  const cas = useLoad(() => call(client.GET('/api/v1/customer/cas')), [refresh]);
  const caOptions = cas.data?.cas ?? [];
  return (
    <>
      <h1>Devices &amp; certificates</h1>
      <ExpiryChart scope="customer" refresh={refresh} />
      {device ? (
        <DevicePanel key={device} deviceId={device} refresh={refresh} onChanged={changed} onClose={() => go({ device: undefined })} outcome={shown('device')} onOutcome={report('device')} cas={caOptions} />
      ) : null}
      <DeviceList
        scope="customer"
        query={query}
        go={go}
        refresh={refresh}
        cas={caOptions}
        register={<RegisterDevice query={query} outcome={shown('register')} onOutcome={report('register')} onChanged={changed} />}
      />
      <Certificates query={query} go={go} refresh={refresh} cas={caOptions} />
    </>
  );
}

const CERT_STATUS_LABEL: Record<DeviceSummary['certificate_status'], string> = { ACTIVE: 'active', EXPIRED: 'expired', REVOKED: 'revoked', NONE: 'no certificate' };

/**
 * The device list with its server-side search, for a tenant (`customer`: Manage opens the device
 * on this page) or for operators (`operator`: every tenant, a tenant picker, and each device's
 * certificates on the operator's certificate page).
 */
export function DeviceList(props: {
  scope: 'customer' | 'operator';
  query: URLSearchParams;
  go: (changes: QueryValues) => void;
  refresh?: number;
  cas: CaOption[];
  tenants?: string[];
  register?: ComponentChildren;
}) {
  const { query, scope } = props;
  const search = searchOf(query);
  const operator = scope === 'operator';
  const pager = urlPager(query, 'cursor', props.go);
  const devices = useLoad(() => {
    const q: DeviceQuery = {
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
    return operator ? call(client.GET('/api/v1/operator/devices', { params: { query: { ...q, tenant_id: search.tenant_id } } })) : call(client.GET('/api/v1/customer/devices', { params: { query: q } }));
  }, [pager.cursor, props.refresh, JSON.stringify(search)]);
  const columns = operator ? 7 : 6;
  return (
    <section aria-labelledby="devices-heading">
      <h2 id="devices-heading">Devices</h2>
      {props.register}
      <DeviceSearch
        key={JSON.stringify(search)}
        search={search}
        tenants={operator ? (props.tenants ?? []) : undefined}
        cas={props.cas}
        // New filters start at the first page; the open device stays open.
        onApply={(s) => props.go({ ...Object.fromEntries(SEARCH_KEYS.map((k) => [k, s[k]])), cursor: [] })}
      />
      <Loading loading={devices.loading && !devices.data} error={devices.error} />
      {devices.data ? (
        <>
          <div class="overflow-auto stack-on-phone">
            <table class="striped" aria-busy={devices.loading ? 'true' : 'false'}>
              <caption>{devices.data.total_capped ? `more than ${devices.data.total.toLocaleString('en-US')} devices` : plural(devices.data.total, 'device')}</caption>
              <thead>
                <tr>
                  {operator ? <th scope="col">Tenant</th> : null}
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
                    <td colSpan={columns}>No devices match.</td>
                  </tr>
                ) : null}
                {devices.data.devices.map((d) => (
                  <tr key={`${d.tenant_id}/${d.device_id}`}>
                    {operator ? <td data-label="Tenant">{d.tenant_id}</td> : null}
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
                      {operator ? (
                        <a
                          href={routeHref('/operator/certificates', { tenant_id: d.tenant_id, device_id: d.device_id })}
                          role="button"
                          class="secondary small"
                          aria-label={`Certificates of ${d.tenant_id}/${d.device_id}`}
                        >
                          Certificates
                        </a>
                      ) : (
                        <a href={routeHref('/fleet', changedQuery(query, { device: d.device_id }))} role="button" class="secondary small" aria-label={`Manage device ${d.device_id}`}>
                          Manage
                        </a>
                      )}
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

/**
 * The issuing-CA picker, fed by the API (a customer: its CAs; an operator: every issuing CA). A CA
 * id the list does not hold (a link to a CA not listed any more) stays selectable.
 */
export function CaSelect(props: { name: string; label: string; cas: CaOption[]; value: string; onChange: (v: string) => void }) {
  const extra = props.value && !props.cas.some((c) => c.id === props.value) ? [props.value] : [];
  return (
    <label>
      {props.label}
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Any CA</option>
        {props.cas.map((c) => (
          <option key={c.id} value={c.id}>
            {c.subject} ({c.status}, {plural(c.active_certificates, 'active certificate')})
          </option>
        ))}
        {extra.map((id) => (
          <option key={id} value={id}>
            {id}
          </option>
        ))}
      </select>
    </label>
  );
}

function DeviceSearch(props: { search: Search; tenants?: string[]; cas: CaOption[]; onApply: (s: Search) => void }) {
  const [s, setS] = useState<Search>(props.search);
  const field = (k: keyof Search) => ({ name: k, value: s[k] ?? '', onInput: (e: Event) => setS({ ...s, [k]: (e.currentTarget as HTMLInputElement).value }) });
  const choice = (k: keyof Search) => ({ ...field(k), onChange: (e: Event) => setS({ ...s, [k]: (e.currentTarget as HTMLSelectElement).value }) });
  return (
    <FilterForm label="Search devices" onApply={() => props.onApply({ ...s, id_prefix: s.id_prefix?.trim(), site_id: s.site_id?.trim() })}>
      {props.tenants ? <TenantSelect name="tenant_id" tenants={props.tenants} value={s.tenant_id ?? ''} onChange={(v) => setS({ ...s, tenant_id: v })} /> : null}
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
        <select {...choice('certificate_status')}>
          <option value="">Any</option>
          <option value="ACTIVE">active</option>
          <option value="EXPIRED">expired</option>
          <option value="REVOKED">revoked</option>
          <option value="NONE">no certificate</option>
        </select>
      </label>
      <label>
        Expiring within
        <select {...choice('expiring_within_days')}>
          <option value="">Any time</option>
          <option value="7">7 days</option>
          <option value="30">30 days</option>
          <option value="90">90 days</option>
        </select>
      </label>
      <label>
        Rotation
        <select {...choice('rotation')}>
          <option value="">Any</option>
          <option value="pending">pending</option>
          <option value="none">none pending</option>
        </select>
      </label>
      <CaSelect name="ca_id" label="Issuing CA" cas={props.cas} value={s.ca_id ?? ''} onChange={(v) => setS({ ...s, ca_id: v })} />
      <label>
        Sort by
        <select {...choice('sort')}>
          <option value="">Device ID</option>
          <option value="expiry">Soonest expiry</option>
        </select>
      </label>
    </FilterForm>
  );
}

function RegisterDevice(props: { query: URLSearchParams; outcome: ActionOutcome; onOutcome: (o: ActionOutcome) => void; onChanged: () => void }) {
  const [deviceId, setDeviceId] = useState('');
  const [siteId, setSiteId] = useState('');
  return (
    <details>
      <summary role="button" class="secondary outline">
        Register a device
      </summary>
      <ActionForm
        label="Register device"
        onOutcome={props.onOutcome}
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
              Device {device.device_id} registered. <a href={routeHref('/fleet', changedQuery(props.query, { device: device.device_id }))}>Open device {device.device_id}</a>
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
      <Outcome result={props.outcome.result} error={props.outcome.error} />
    </details>
  );
}

function Certificates(props: { query: URLSearchParams; go: (changes: QueryValues) => void; refresh: number; cas: CaOption[] }) {
  const { query } = props;
  const filters: CertificateFilter = {
    device_id: query.get(CERT_KEYS.device_id) ?? undefined,
    status: (query.get(CERT_KEYS.status) as Status | null) ?? undefined,
    expiring_within_days: query.get(CERT_KEYS.expiring_within_days) ? Number(query.get(CERT_KEYS.expiring_within_days)) : undefined,
    ca_id: query.get(CERT_KEYS.ca_id) ?? undefined,
  };
  const pager = urlPager(query, 'cert_cursor', props.go);
  const page = useLoad(
    () => call(client.GET('/api/v1/customer/certificates', { params: { query: { ...filters, limit: 25, cursor: pager.cursor } } })),
    [JSON.stringify(filters), pager.cursor, props.refresh],
  );
  const apply = (f: CertificateFilter) =>
    props.go({
      [CERT_KEYS.device_id]: f.device_id,
      [CERT_KEYS.status]: f.status,
      [CERT_KEYS.expiring_within_days]: f.expiring_within_days,
      [CERT_KEYS.ca_id]: f.ca_id,
      cert_cursor: [],
    });
  return (
    <section aria-labelledby="certs-heading">
      <h2 id="certs-heading">Certificates</h2>
      <CertificateFilters key={JSON.stringify(filters)} cas={props.cas} initial={filters} onApply={apply} />
      <Loading loading={page.loading && !page.data} error={page.error} />
      {page.data ? (
        <>
          <CertificateTable
            caption={plural(page.data.total, 'certificate')}
            certificates={page.data.certificates}
            cas={props.cas}
            actions={(c) => (
              <button type="button" class="secondary small" aria-label={`Manage device ${c.device_id} (certificate ${c.id})`} onClick={() => props.go({ device: c.device_id })}>
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

export type CertificateFilter = { device_id?: string; status?: Status; expiring_within_days?: number; tenant_id?: string; ca_id?: string };

/** Certificate filters: device, status, expiry window, the issuing CA (a picker fed by the API); `tenants` (operators) adds the tenant picker. */
export function CertificateFilters(props: { tenants?: string[]; cas: CaOption[]; initial?: CertificateFilter; onApply: (f: CertificateFilter) => void }) {
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
          ...(props.tenants && tenant ? { tenant_id: tenant } : {}),
          ...(device.trim() ? { device_id: device.trim() } : {}),
          ...(status ? { status: status as Status } : {}),
          ...(expiring ? { expiring_within_days: Number(expiring) } : {}),
          ...(caId ? { ca_id: caId } : {}),
        });
      }}
    >
      {props.tenants ? <TenantSelect name="tenant_id" tenants={props.tenants} value={tenant} onChange={setTenant} /> : null}
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
      <CaSelect name="ca_id" label="Issuing CA" cas={props.cas} value={caId} onChange={setCaId} />
    </FilterForm>
  );
}

function DevicePanel(props: { deviceId: string; refresh: number; onChanged: () => void; onClose: () => void; outcome: ActionOutcome; onOutcome: (o: ActionOutcome) => void; cas: CaOption[] }) {
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
      <DeviceActions deviceId={id} rotation={rotation.data} certificates={certs.data?.certificates ?? []} onChanged={props.onChanged} outcome={props.outcome} onOutcome={props.onOutcome} />
      <Loading loading={certs.loading && !certs.data} error={certs.error} />
      {certs.data ? <CertificateTable caption={`Certificates of ${id}`} certificates={certs.data.certificates} cas={props.cas} /> : null}
    </article>
  );
}
