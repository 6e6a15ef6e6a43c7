import { Fragment, type ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, call, client } from '../api/client';
import { paths as openapiPaths } from '../api/openapi.json';
import type { paths } from '../api/schema';
import { daysLeft, plural, timeLeft, when } from '../format';
import { routeHref } from '../router';
import { ActionForm, ConfirmAction, Loading, Outcome, useLoad, type ActionOutcome } from '../ui';

type CaList = paths['/api/v1/operator/cas']['get']['responses'][200]['content']['application/json'];
export type Ca = CaList['cas'][number];
type CreateBody = NonNullable<paths['/api/v1/operator/cas']['post']['requestBody']>['content']['application/json'];
type KeyType = NonNullable<CreateBody['key_type']>;
type CaKind = NonNullable<CreateBody['kind']>;

/** The key types the API accepts for a new CA: its own OpenAPI schema is the one source. */
const CA_KEY_TYPES = openapiPaths['/api/v1/operator/cas'].post.requestBody.content['application/json'].schema.properties.key_type.enum as KeyType[];
/** The reason the API accepts for revoking a CA (a CA ended without compromise is retired). */
const CA_REVOKE_REASON = 'cACompromise';
/** CA expiry alerts are raised at 180, 60 and 30 days: within 60 the date is shown as urgent. */
const CA_SOON_DAYS = 60;

const STATUS_HELP: Record<string, string> = {
  staged: 'published to brokers and devices, not yet signing',
  active: 'signs new certificates and renewals of its scope',
  retiring: 'no new certificates; its certificates stay valid and its CRL is published',
  retired: 'its certificates have expired or were revoked; its CRL stops',
  revoked: 'compromised: signs nothing, no longer trusted by brokers',
};

export const caHref = (id: string) => `#/operator/cas/${encodeURIComponent(id)}`;
const scopeOf = (ca: Pick<Ca, 'tenant_id'>) => (ca.tenant_id === null ? 'global' : `tenant ${ca.tenant_id}`);

export function CaStatus({ status }: { status: string }) {
  return (
    <span class={`badge ca-${status}`} title={STATUS_HELP[status]}>
      {status}
    </span>
  );
}

export function CaExpiry({ notAfter }: { notAfter: string }) {
  return <span class={daysLeft(notAfter) <= CA_SOON_DAYS ? 'soon' : undefined}>{`${when(notAfter)} (${timeLeft(notAfter)})`}</span>;
}

/**
 * The Device CAs (issue 19): `#/operator/cas` lists them with the stage and import forms;
 * `#/operator/cas/{id}` is one CA with its migration progress and its actions.
 */
export function CasView({ id, tenants }: { id: string | null; tenants: string[] }) {
  return id ? <CaDetail key={id} id={id} /> : <CaList tenants={tenants} />;
}

/** The CA table (also on the fleet overview, compact): status, scope, subject, expiry, active certificates. */
export function CaTable(props: { cas: Ca[]; caption: string; busy?: boolean; compact?: boolean }) {
  return (
    <div class="overflow-auto stack-on-phone">
      <table class="striped ca-table" aria-busy={props.busy ? 'true' : 'false'}>
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">CA</th>
            <th scope="col">Status</th>
            <th scope="col">Scope</th>
            {props.compact ? null : <th scope="col">ID</th>}
            <th scope="col">Not after</th>
            <th scope="col">Active certificates</th>
          </tr>
        </thead>
        <tbody>
          {props.cas.length === 0 ? (
            <tr>
              <td colSpan={props.compact ? 5 : 6}>No CA is a record yet.</td>
            </tr>
          ) : null}
          {props.cas.map((ca) => (
            <tr key={ca.id} data-status={ca.status}>
              <td data-label="CA" class="wrap">
                <a href={caHref(ca.id)}>{ca.subject}</a>
                {ca.kind === 'root' ? <small> (root)</small> : ca.parent_id ? <small> (intermediate)</small> : null}
              </td>
              <td data-label="Status">
                <CaStatus status={ca.status} />
              </td>
              <td data-label="Scope">{scopeOf(ca)}</td>
              {props.compact ? null : (
                <td data-label="ID">
                  <code>{ca.id}</code>
                </td>
              )}
              <td data-label="Not after">
                <CaExpiry notAfter={ca.not_after} />
              </td>
              <td data-label="Active certificates">{ca.active_certificates}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CaList({ tenants }: { tenants: string[] }) {
  const list = useLoad(() => call(client.GET('/api/v1/operator/cas')), []);
  const [outcome, setOutcome] = useState<ActionOutcome>({ result: null, error: null });
  const staged = (ca: Ca, how: string): ComponentChildren => {
    list.reload();
    const what =
      ca.kind === 'root'
        ? `Root CA ${ca.id} ${how} (active: signs intermediates and its CRL, never a device certificate).`
        : `CA ${ca.id} ${how}${ca.parent_id ? `, signed by root ${ca.parent_id}` : ''} (staged: published, not yet signing).`;
    return (
      <>
        {what} <a href={caHref(ca.id)}>Open CA {ca.subject}</a>
      </>
    );
  };
  return (
    <>
      <h1>Certificate authorities</h1>
      <p>
        <small>
          A rollover: stage the next CA, let brokers and devices fetch it, activate it (the scope's active CA becomes retiring), move the devices (renewals and{' '}
          <code>certfleet rotate-expiring --issuer</code>), then retire the old CA.
        </small>
      </p>
      <section aria-labelledby="cas-heading">
        <h2 id="cas-heading">Device CAs</h2>
        <Loading loading={list.loading && !list.data} error={list.error} />
        {list.data ? <CaTable cas={list.data.cas} caption={plural(list.data.cas.length, 'CA')} busy={list.loading} /> : null}
      </section>
      <div class="action-outcome">
        <Outcome result={outcome.result} error={outcome.error} />
      </div>
      <div class="grid actions-grid">
        <StageCa tenants={tenants} cas={list.data?.cas ?? []} onOutcome={setOutcome} onStaged={(ca) => staged(ca, ca.kind === 'root' ? 'created with a new key' : 'staged with a new key')} />
        <ImportCa tenants={tenants} onOutcome={setOutcome} onImported={(ca) => staged(ca, 'imported')} />
      </div>
    </>
  );
}

function ScopeSelect(props: { name: string; tenants: string[]; value: string; onChange: (v: string) => void }) {
  return (
    <label>
      Scope
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Global (every tenant without its own CA)</option>
        {props.tenants.map((t) => (
          <option key={t} value={t}>
            Tenant {t}
          </option>
        ))}
      </select>
    </label>
  );
}

/**
 * Stage a CA with a key certfleet generates: a self-signed issuing CA, an intermediate signed by an
 * active certfleet root of the same scope (parent_id), or a root (kind root: in service at once,
 * signs intermediates only) — the CLI's `ca create`, `--parent`, `--root`.
 */
function StageCa(props: { tenants: string[]; cas: Ca[]; onOutcome: (o: ActionOutcome) => void; onStaged: (ca: Ca) => ComponentChildren }) {
  const [tenant, setTenant] = useState('');
  const [kind, setKind] = useState<CaKind>('issuing');
  const [parentId, setParentId] = useState('');
  const [keyType, setKeyType] = useState<KeyType>(CA_KEY_TYPES[0] ?? 'ec-p256');
  const [commonName, setCommonName] = useState('');
  const [keyUri, setKeyUri] = useState('');
  // The roots that can sign an intermediate of the chosen scope: active, global or of that tenant.
  const roots = props.cas.filter((c) => c.kind === 'root' && c.status === 'active' && (c.tenant_id === null || c.tenant_id === (tenant || null)));
  const parent = kind === 'issuing' ? roots.find((r) => r.id === parentId) : undefined;
  const scope = <strong>{tenant ? `tenant ${tenant}` : 'global'}</strong>;
  const where = keyUri.trim() ? `in the token at ${keyUri.trim()}` : 'under CA_KEY_DIR';
  return (
    <section aria-labelledby="stage-ca-heading">
      <h2 id="stage-ca-heading" class="h4">
        Stage a new CA
      </h2>
      <ActionForm
        label="Stage CA"
        onOutcome={props.onOutcome}
        question={() =>
          kind === 'root' ? (
            <p>
              Generate a {keyType} key {where} and create a <strong>root CA</strong> for the {scope} scope? It is in service at once (published to brokers and devices): it signs intermediates
              and its CRL, never a device certificate.
            </p>
          ) : (
            <p>
              Generate a {keyType} key {where} and stage {parent ? <>an intermediate CA signed by the root <strong>{parent.subject}</strong></> : 'a self-signed CA'} for the {scope} scope? It is
              published to brokers and devices at once and signs nothing until activated.
            </p>
          )
        }
        run={async () => {
          const body: CreateBody = {
            key_type: keyType,
            tenant_id: tenant || null,
            ...(kind === 'root' ? { kind: 'root' as const } : parent ? { parent_id: parent.id } : {}),
            ...(commonName.trim() ? { common_name: commonName.trim() } : {}),
            ...(keyUri.trim() ? { key_uri: keyUri.trim() } : {}),
          };
          return props.onStaged(await call(client.POST('/api/v1/operator/cas', { body })));
        }}
      >
        <ScopeSelect name="stage_tenant_id" tenants={props.tenants} value={tenant} onChange={setTenant} />
        <label>
          Kind
          <select name="kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as CaKind)}>
            <option value="issuing">Issuing CA (signs device certificates)</option>
            <option value="root">Root CA (signs intermediates only)</option>
          </select>
        </label>
        {kind === 'issuing' ? (
          <label>
            Signed by
            <select name="parent_id" value={parent ? parentId : ''} onChange={(e) => setParentId(e.currentTarget.value)} aria-describedby="parent-help">
              <option value="">Itself (self-signed)</option>
              {roots.map((r) => (
                <option key={r.id} value={r.id}>
                  Root {r.subject}
                </option>
              ))}
            </select>
            <small id="parent-help">{roots.length ? 'An intermediate is trusted through its root.' : 'No active root CA can sign here yet: create a root first.'}</small>
          </label>
        ) : null}
        <label>
          Key type
          <select name="key_type" value={keyType} onChange={(e) => setKeyType(e.currentTarget.value as KeyType)}>
            {CA_KEY_TYPES.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
        <label>
          Common name (optional)
          <input name="common_name" maxLength={64} pattern="[A-Za-z0-9][A-Za-z0-9 ._\(\)\-]{0,63}" value={commonName} onInput={(e) => setCommonName(e.currentTarget.value)} />
        </label>
        <label>
          PKCS#11 key URI (optional)
          <input name="key_uri" maxLength={1024} pattern="pkcs11:.*" placeholder="pkcs11:token=certfleet;object=device-ca-2" value={keyUri} onInput={(e) => setKeyUri(e.currentTarget.value)} />
        </label>
      </ActionForm>
    </section>
  );
}

function ImportCa(props: { tenants: string[]; onOutcome: (o: ActionOutcome) => void; onImported: (ca: Ca) => ComponentChildren }) {
  const [tenant, setTenant] = useState('');
  const [certPem, setCertPem] = useState('');
  const [keyPem, setKeyPem] = useState('');
  const [keyUri, setKeyUri] = useState('');
  return (
    <section aria-labelledby="import-ca-heading">
      <h2 id="import-ca-heading" class="h4">
        Import a CA (bring your own)
      </h2>
      <ActionForm
        label="Import CA"
        onOutcome={props.onOutcome}
        question={() => (
          <p>
            Import this CA certificate with its {keyUri.trim() ? `key at ${keyUri.trim()}` : 'private key'} and stage it for the{' '}
            <strong>{tenant ? `tenant ${tenant}` : 'global'}</strong> scope?
          </p>
        )}
        run={async () => {
          const ca = await call(
            client.POST('/api/v1/operator/cas/import', { body: { cert_pem: certPem, tenant_id: tenant || null, ...(keyUri.trim() ? { key_uri: keyUri.trim() } : { key_pem: keyPem }) } }),
          );
          // The private key leaves the page's memory once certfleet has it.
          setKeyPem('');
          setCertPem('');
          return props.onImported(ca);
        }}
      >
        <ScopeSelect name="import_tenant_id" tenants={props.tenants} value={tenant} onChange={setTenant} />
        <label>
          CA certificate (PEM)
          <textarea name="cert_pem" rows={3} required spellcheck={false} value={certPem} onInput={(e) => setCertPem(e.currentTarget.value)} />
        </label>
        <label>
          CA private key (PEM)
          <textarea name="key_pem" rows={3} required={!keyUri.trim()} autocomplete="off" spellcheck={false} value={keyPem} onInput={(e) => setKeyPem(e.currentTarget.value)} />
        </label>
        <label>
          or its PKCS#11 key URI
          <input name="import_key_uri" maxLength={1024} pattern="pkcs11:.*" value={keyUri} onInput={(e) => setKeyUri(e.currentTarget.value)} />
        </label>
      </ActionForm>
    </section>
  );
}

/** Fields of a CA record this console knows; any other (a newer server's) is still shown, as text. */
const KNOWN_FIELDS = new Set([
  'id',
  'kind',
  'parent_id',
  'status',
  'tenant_id',
  'subject',
  'issuer_key_id',
  'not_before',
  'not_after',
  'key',
  'crl_distribution_point',
  'created_at',
  'activated_at',
  'retiring_at',
  'retired_at',
  'revoked_at',
  'reason',
  'active_certificates',
]);
const fieldLabel = (k: string) => k.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
const fieldText = (v: unknown) => (v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));

function CaDetail({ id }: { id: string }) {
  const heading = useRef<HTMLHeadingElement>(null);
  const shown = useLoad(() => call(client.GET('/api/v1/operator/cas/{id}', { params: { path: { id } } })), [id]);
  // A root's intermediates (the list names each CA's parent).
  const all = useLoad(() => call(client.GET('/api/v1/operator/cas')), [id, shown.data]);
  const children = all.data?.cas.filter((c) => c.parent_id === id) ?? [];
  const [outcome, setOutcome] = useState<ActionOutcome>({ result: null, error: null });
  const d = shown.data;
  useEffect(() => {
    if (d) heading.current?.focus();
  }, [Boolean(d)]);
  return (
    <>
      <p>
        <a href="#/operator/cas">All certificate authorities</a>
      </p>
      <h1 ref={heading} tabIndex={-1}>
        {d ? `CA ${d.ca.subject}` : `CA ${id}`}
      </h1>
      <Loading loading={shown.loading && !d} error={shown.error} />
      {d ? (
        <>
          <dl class="facts ca-facts">
            <dt>Status</dt>
            <dd>
              <CaStatus status={d.ca.status} /> <small>{STATUS_HELP[d.ca.status] ?? ''}</small>
            </dd>
            <dt>Scope</dt>
            <dd>{scopeOf(d.ca)}</dd>
            <dt>Kind</dt>
            <dd class="ca-kind">
              {d.ca.kind === 'root' ? (
                'root (signs intermediates and its CRL, never a device certificate)'
              ) : d.ca.parent_id ? (
                <>
                  intermediate, signed by the root <a href={caHref(d.ca.parent_id)}>{all.data?.cas.find((c) => c.id === d.ca.parent_id)?.subject ?? d.ca.parent_id}</a>
                </>
              ) : (
                'issuing, self-signed'
              )}
            </dd>
            {d.ca.kind === 'root' ? (
              <>
                <dt>Intermediates</dt>
                <dd class="wrap">
                  {children.length === 0
                    ? 'none yet'
                    : children.map((c, i) => (
                        <Fragment key={c.id}>
                          {i > 0 ? ', ' : null}
                          <a href={caHref(c.id)}>{c.subject}</a> ({c.status})
                        </Fragment>
                      ))}
                </dd>
              </>
            ) : null}
            <dt>ID</dt>
            <dd>
              <code>{d.ca.id}</code>
            </dd>
            <dt>Valid</dt>
            <dd>
              from {when(d.ca.not_before)} to <CaExpiry notAfter={d.ca.not_after} />
            </dd>
            <dt>Active certificates</dt>
            <dd>{d.ca.active_certificates}</dd>
            <dt>Key</dt>
            <dd class="wrap">
              {d.ca.key.kind === 'pkcs11' ? 'PKCS#11' : 'file'} <code>{d.ca.key.ref}</code>
              {d.key_loaded ? ' (loaded: this server can sign with it)' : ' (not loaded by this server)'}
            </dd>
            <dt>Key identifier</dt>
            <dd>
              <code class="wrap">{d.ca.issuer_key_id}</code>
            </dd>
            <dt>CRL distribution point</dt>
            <dd class="wrap">{d.ca.crl_distribution_point}</dd>
            <dt>Created</dt>
            <dd>{when(d.ca.created_at)}</dd>
            {(
              [
                ['Activated', d.ca.activated_at],
                ['Retiring since', d.ca.retiring_at],
                ['Retired', d.ca.retired_at],
                ['Revoked', d.ca.revoked_at],
              ] as const
            )
              .filter(([, at]) => at)
              .map(([label, at]) => (
                <Fragment key={label}>
                  <dt>{label}</dt>
                  <dd>{when(at)}</dd>
                </Fragment>
              ))}
            {d.ca.reason ? (
              <>
                <dt>Reason</dt>
                <dd>{d.ca.reason}</dd>
              </>
            ) : null}
            {Object.entries(d.ca as Record<string, unknown>)
              .filter(([k]) => !KNOWN_FIELDS.has(k))
              .map(([k, v]) => (
                <Fragment key={k}>
                  <dt>{fieldLabel(k)}</dt>
                  <dd class="wrap">{fieldText(v)}</dd>
                </Fragment>
              ))}
          </dl>
          <CaActions ca={d.ca} outcome={outcome} onOutcome={setOutcome} onChanged={shown.reload} />
          <section aria-labelledby="progress-heading">
            <h2 id="progress-heading">Migration progress</h2>
            <div class="overflow-auto stack-on-phone">
              <table class="striped" aria-busy={shown.loading ? 'true' : 'false'}>
                <caption>
                  {plural(d.ca.active_certificates, 'unexpired, unrevoked certificate')} under this CA, by tenant
                </caption>
                <thead>
                  <tr>
                    <th scope="col">Tenant</th>
                    <th scope="col">Active certificates</th>
                    <th scope="col">Certificates</th>
                  </tr>
                </thead>
                <tbody>
                  {d.progress.length === 0 ? (
                    <tr>
                      <td colSpan={3}>No active certificate remains under this CA.</td>
                    </tr>
                  ) : null}
                  {d.progress.map((p) => (
                    <tr key={p.tenant_id}>
                      <td data-label="Tenant">{p.tenant_id}</td>
                      <td data-label="Active certificates">{p.active_certificates}</td>
                      <td data-label="Certificates">
                        <a href={routeHref('/operator/certificates', { tenant_id: p.tenant_id, ca_id: d.ca.id, status: 'ACTIVE' })}>Certificates of {p.tenant_id} under this CA</a>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </section>
          <details>
            <summary>CA certificate (PEM)</summary>
            <label>
              CA certificate of {d.ca.id}
              <textarea readOnly rows={8} value={d.cert_pem} spellcheck={false} />
            </label>
          </details>
        </>
      ) : null}
    </>
  );
}

/**
 * Activate, retire (refused with 409 CA_HAS_ACTIVE_CERTIFICATES while certificates remain: then
 * a forced retirement with a reason), revoke (cACompromise). Each asks for confirmation; the
 * latest outcome replaces the one before, above the actions.
 */
function CaActions(props: { ca: Ca; outcome: ActionOutcome; onOutcome: (o: ActionOutcome) => void; onChanged: () => void }) {
  const { ca } = props;
  const path = { id: ca.id };
  const [refused, setRefused] = useState(false);
  const [forceReason, setForceReason] = useState('');
  // A root is in service from its creation: it retires from active (once none of its intermediates is published).
  const retirable = ca.status === 'staged' || ca.status === 'retiring' || (ca.kind === 'root' && ca.status === 'active');
  const outcome = (o: ActionOutcome) => {
    if (o.error === null) setRefused(false);
    props.onOutcome(o);
  };
  return (
    <section aria-labelledby="ca-actions-heading" class="ca-actions">
      <h2 id="ca-actions-heading">Actions</h2>
      <div class="action-outcome">
        <Outcome result={props.outcome.result} error={props.outcome.error} />
      </div>
      <p class="inline-actions">
        {ca.status === 'staged' ? (
          <>
            <ConfirmAction
              label="Activate"
              ariaLabel={`Activate CA ${ca.id}`}
              onOutcome={outcome}
              question={
                <p>
                  Activate <strong>{ca.subject}</strong>? New certificates and renewals of the {scopeOf(ca)} scope are signed by it from now on; the scope's active CA becomes retiring
                  (its certificates stay valid).
                </p>
              }
              run={async () => {
                const r = await call(client.POST('/api/v1/operator/cas/{id}/activate', { params: { path } }));
                props.onChanged();
                return r.previous ? `CA ${ca.id} is active; ${r.previous} is retiring.` : `CA ${ca.id} is active.`;
              }}
            />{' '}
          </>
        ) : null}
        {retirable ? (
          <>
            <ConfirmAction
              label="Retire"
              ariaLabel={`Retire CA ${ca.id}`}
              secondary
              onOutcome={outcome}
              question={
                <p>
                  Retire <strong>{ca.subject}</strong>? Its CRL stops being published and brokers stop trusting it. Refused while unexpired, unrevoked certificates remain under it.
                </p>
              }
              run={async () => {
                try {
                  await call(client.POST('/api/v1/operator/cas/{id}/retire', { params: { path }, body: {} }));
                } catch (e) {
                  if (e instanceof ApiError && e.code === 'CA_HAS_ACTIVE_CERTIFICATES') setRefused(true);
                  throw e;
                }
                props.onChanged();
                return `CA ${ca.id} is retired.`;
              }}
            />{' '}
          </>
        ) : null}
        {ca.status !== 'revoked' ? (
          <ConfirmAction
            label="Revoke"
            ariaLabel={`Revoke CA ${ca.id}`}
            danger
            onOutcome={outcome}
            question={
              <p>
                Revoke <strong>{ca.subject}</strong> with reason <code>{CA_REVOKE_REASON}</code>? It signs nothing from now on and brokers stop trusting it: every device still holding one of its{' '}
                {plural(ca.active_certificates, 'active certificate')} is refused until it has a certificate of another CA. This cannot be undone.
              </p>
            }
            run={async () => {
              const r = await call(client.POST('/api/v1/operator/cas/{id}/revoke', { params: { path }, body: { reason: CA_REVOKE_REASON } }));
              props.onChanged();
              return `CA ${ca.id} is revoked (${CA_REVOKE_REASON}; it was ${r.was}).`;
            }}
          />
        ) : null}
      </p>
      {retirable && refused ? (
        <section aria-labelledby="force-retire-heading" class="force-retire">
          <h3 id="force-retire-heading">Retire anyway</h3>
          <p>
            The {plural(ca.active_certificates, 'certificate')} still under this CA will be refused by the brokers. A forced retirement is audited with its reason.
          </p>
          <ActionForm
            label="Force retirement"
            danger
            onOutcome={outcome}
            question={() => (
              <p>
                Retire <strong>{ca.subject}</strong> although certificates remain, with the reason “{forceReason.trim()}”?
              </p>
            )}
            run={async () => {
              await call(client.POST('/api/v1/operator/cas/{id}/retire', { params: { path }, body: { force: true, reason: forceReason.trim() } }));
              setForceReason('');
              props.onChanged();
              return `CA ${ca.id} is retired (forced: ${forceReason.trim()}).`;
            }}
          >
            <label>
              Reason (required, audited)
              <input name="force_reason" required minLength={1} maxLength={500} pattern=".*\S.*" value={forceReason} onInput={(e) => setForceReason(e.currentTarget.value)} />
            </label>
          </ActionForm>
        </section>
      ) : null}
    </section>
  );
}
