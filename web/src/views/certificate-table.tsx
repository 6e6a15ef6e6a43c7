import type { ComponentChildren } from 'preact';
import type { components } from '../api/schema';
import { daysLeft, shortFingerprint, timeLeft, when } from '../format';
import { caHref } from './cas';

type Certificate = components['schemas']['Certificate'];

/** The issuing CA of a certificate: its subject when the page knows the CA (else its id); operators get a link to the CA's page. */
function IssuingCa(props: { id: string | null; cas?: { id: string; subject: string }[]; link?: boolean }) {
  if (!props.id) return <>—</>;
  const subject = props.cas?.find((c) => c.id === props.id)?.subject;
  const text = subject ? <span title={props.id}>{subject}</span> : <code>{props.id}</code>;
  return props.link ? <a href={caHref(props.id)}>{text}</a> : text;
}

/** Certificates with status, key type, serial, fingerprint, issuing CA, expiry (and how soon, "in 23 hours"), scheduled revocation. */
export function CertificateTable(props: {
  caption: string;
  certificates: Certificate[];
  showTenant?: boolean;
  /** The CAs the page knows (their subjects name the issuing CA column). */
  cas?: { id: string; subject: string }[];
  /** Operators: the issuing CA links to its page. */
  linkCas?: boolean;
  actions?: (c: Certificate) => ComponentChildren;
}) {
  return (
    <div class="overflow-auto" tabIndex={0} role="region" aria-label={props.caption}>
      <table class="striped">
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">ID</th>
            {props.showTenant ? <th scope="col">Tenant</th> : null}
            <th scope="col">Device</th>
            <th scope="col">Status</th>
            <th scope="col">Key</th>
            <th scope="col">Serial</th>
            <th scope="col">Fingerprint (SHA-256)</th>
            <th scope="col">Issuing CA</th>
            <th scope="col">Not after</th>
            <th scope="col">Expires</th>
            <th scope="col">Rotation</th>
            {props.actions ? <th scope="col" class="actions">Actions</th> : null}
          </tr>
        </thead>
        <tbody>
          {props.certificates.length === 0 ? (
            <tr>
              <td colSpan={12}>No certificates match.</td>
            </tr>
          ) : null}
          {props.certificates.map((c) => {
            const left = daysLeft(c.not_after);
            return (
              <tr key={c.id}>
                <td>{c.id}</td>
                {props.showTenant ? <td>{c.tenant_id}</td> : null}
                <td>{c.device_id}</td>
                <td>
                  <span class={`badge status-${c.status.toLowerCase()}`}>{c.status}</span>
                  {c.revoked_reason ? <small> ({c.revoked_reason})</small> : null}
                </td>
                <td>{c.key_type}</td>
                <td>
                  <code title={c.serial_number}>{c.serial_number.slice(0, 12)}…</code>
                </td>
                <td>
                  <code title={c.fingerprint_sha256}>{shortFingerprint(c.fingerprint_sha256)}</code>
                </td>
                <td class="issuing-ca">
                  <IssuingCa id={c.ca_id} cas={props.cas} link={props.linkCas} />
                </td>
                <td>{when(c.not_after)}</td>
                <td class={c.status === 'ACTIVE' && left <= 30 ? 'soon' : undefined}>{c.status === 'ACTIVE' ? timeLeft(c.not_after) : '—'}</td>
                <td>{c.scheduled_revoke_at ? `old: revoked ${when(c.scheduled_revoke_at)}` : '—'}</td>
                {props.actions ? <td class="actions">{props.actions(c)}</td> : null}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
