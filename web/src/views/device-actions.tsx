import { useEffect, useState } from 'preact/hooks';
import { call, client } from '../api/client';
import type { components } from '../api/schema';
import { MAX_ROTATION_GRACE_HOURS, MAX_VALIDITY_DAYS, type KeyType } from '../../../src/domain/certificate.ts';
import { REVOCATION_REASON_NAMES, when } from '../format';
import { ActionForm, ConfirmAction, Outcome, ShowOnce, type ActionOutcome } from '../ui';

type Certificate = components['schemas']['Certificate'];
type PendingRotation = components['schemas']['PendingRotation'];

const KEY_WARNING =
  'This private key is shown once and is not stored anywhere: not by certfleet, not by this browser. Download it now and install it on the device; hiding it or leaving the page discards it.';

/**
 * Issue, rotate, confirm or cancel a rotation, revoke: each asks for confirmation; the latest
 * outcome replaces the one before, on one line above the actions (and replaces the page's other
 * outcomes, such as "Device X registered"). `certificates` are all the device's certificates, as last loaded.
 */
export function DeviceActions(props: {
  deviceId: string;
  rotation: PendingRotation | null;
  certificates: Certificate[];
  onChanged: () => void;
  /** The page's latest outcome of an action on this device (the page keeps one: registering a device replaces it too). */
  outcome: ActionOutcome;
  onOutcome: (o: ActionOutcome) => void;
}) {
  const id = props.deviceId;
  const path = { device_id: id };
  // The one place the private key lives: component state, gone when hidden or when the page is left.
  const [secret, setSecret] = useState<{ pem: string; certificateId: number } | null>(null);
  const [keyType, setKeyType] = useState<KeyType>('ec-p256');
  const [validity, setValidity] = useState('365');
  const [csr, setCsr] = useState('');
  const [csrValidity, setCsrValidity] = useState('365');
  const [grace, setGrace] = useState('24');
  const [rotateKeyType, setRotateKeyType] = useState<KeyType>('ec-p256');
  const [reason, setReason] = useState<string>('cessationOfOperation');
  const { outcome, onOutcome: setOutcome } = props;

  // A key whose certificate is no longer valid (a cancelled rotation, a revocation) is worth
  // nothing: it is discarded rather than offered for download.
  const secretCertificate = secret ? props.certificates.find((c) => c.id === secret.certificateId) : undefined;
  useEffect(() => {
    if (secretCertificate && secretCertificate.status !== 'ACTIVE') setSecret(null);
  }, [secretCertificate?.status]);
  const revocable = props.certificates.filter((c) => c.status === 'ACTIVE');

  const issued = (certificateId: number, pem: string | undefined) => {
    if (pem) setSecret({ pem, certificateId });
    props.onChanged();
  };

  return (
    <div class="device-actions">
      <div class="action-outcome">
        <Outcome result={outcome.result} error={outcome.error} />
      </div>
      {secret && (!secretCertificate || secretCertificate.status === 'ACTIVE') ? (
        <ShowOnce
          title={`Private key of certificate ${secret.certificateId}`}
          warning={KEY_WARNING}
          value={secret.pem}
          filename={`${id}-${secret.certificateId}.key.pem`}
          onDismiss={() => setSecret(null)}
        />
      ) : null}
      <div class="grid actions-grid">
        <section aria-labelledby="generate-heading">
          <h3 id="generate-heading">Generate a certificate</h3>
          <ActionForm
            label="Generate certificate"
            onOutcome={setOutcome}
            question={() => (
              <p>
                Generate a {keyType} key and a certificate valid {validity} days for <strong>{id}</strong>? The private key is shown once.
              </p>
            )}
            run={async () => {
              const r = await call(
                client.POST('/api/v1/customer/devices/{device_id}/certificates/generate', { params: { path }, body: { key_type: keyType, validity_days: Number(validity) } }),
              );
              issued(r.certificate.id, r.private_key_pem);
              return `Certificate ${r.certificate.id} issued (serial ${r.certificate.serial_number}).`;
            }}
          >
            <KeyTypeSelect name="key_type" value={keyType} onChange={setKeyType} />
            <label>
              Validity (days)
              <input name="validity_days" type="number" min={1} max={MAX_VALIDITY_DAYS} required value={validity} onInput={(e) => setValidity(e.currentTarget.value)} />
            </label>
          </ActionForm>
        </section>
        <section aria-labelledby="csr-heading">
          <h3 id="csr-heading">Issue from a CSR</h3>
          <ActionForm
            label="Issue from CSR"
            onOutcome={setOutcome}
            question={() => (
              <p>
                Issue a certificate valid {csrValidity} days for the key in this CSR? The subject becomes <code>CN=tenant/{id}</code>.
              </p>
            )}
            run={async () => {
              const r = await call(
                client.POST('/api/v1/customer/devices/{device_id}/certificates/csr', { params: { path }, body: { csr_pem: csr, validity_days: Number(csrValidity) } }),
              );
              issued(r.certificate.id, undefined);
              setCsr('');
              return `Certificate ${r.certificate.id} issued from the CSR.`;
            }}
          >
            <label>
              PKCS#10 CSR (PEM)
              <textarea name="csr_pem" rows={3} required value={csr} onInput={(e) => setCsr(e.currentTarget.value)} spellcheck={false} />
            </label>
            <label>
              Validity (days)
              <input name="csr_validity_days" type="number" min={1} max={MAX_VALIDITY_DAYS} required value={csrValidity} onInput={(e) => setCsrValidity(e.currentTarget.value)} />
            </label>
          </ActionForm>
        </section>
        <section aria-labelledby="rotate-heading">
          <h3 id="rotate-heading">Rotate</h3>
          <ActionForm
            label="Rotate certificate"
            onOutcome={setOutcome}
            question={() => (
              <p>
                Issue a new {rotateKeyType} certificate for <strong>{id}</strong> and revoke the current {revocable.length === 1 ? 'one' : 'ones'} in {grace} hours (or when you confirm)?
              </p>
            )}
            run={async () => {
              const r = await call(
                client.POST('/api/v1/customer/devices/{device_id}/certificates/rotate', {
                  params: { path },
                  body: { key_type: rotateKeyType, revoke_old_after_hours: Number(grace) },
                }),
              );
              issued(r.new_certificate.id, r.private_key_pem);
              const at = r.old_certificates[0]?.scheduled_revoke_at;
              return `New certificate ${r.new_certificate.id} issued; the old one is revoked ${at ? `at ${when(at)}` : 'after the grace period'}.`;
            }}
          >
            <label>
              Grace period (hours)
              <input name="grace_hours" type="number" min={1} max={MAX_ROTATION_GRACE_HOURS} required value={grace} onInput={(e) => setGrace(e.currentTarget.value)} />
            </label>
            <KeyTypeSelect name="rotate_key_type" value={rotateKeyType} onChange={setRotateKeyType} />
          </ActionForm>
          <p class="inline-actions">
              <ConfirmAction
                label="Confirm rotation"
                disabled={!props.rotation}
                onOutcome={setOutcome}
                question={<p>The device uses its new certificate: revoke the old {props.rotation?.old_certificates.length === 1 ? 'certificate' : 'certificates'} now?</p>}
                run={async () => {
                  await call(client.POST('/api/v1/customer/devices/{device_id}/certificates/rotate/confirm', { params: { path }, body: {} }));
                  props.onChanged();
                  return 'Rotation confirmed: the old certificates are revoked.';
                }}
              />{' '}
              <ConfirmAction
                label="Cancel rotation"
                disabled={!props.rotation}
                onOutcome={setOutcome}
                secondary
                question={<p>The new certificate never reached the device: revoke the new certificate and keep the old one valid?</p>}
                run={async () => {
                  await call(client.POST('/api/v1/customer/devices/{device_id}/certificates/rotate/cancel', { params: { path }, body: {} }));
                  props.onChanged();
                  return 'Rotation cancelled: the new certificate is revoked, the old one stays valid.';
                }}
              />
          </p>
        </section>
      </div>
      {revocable.length > 0 ? (
        <section aria-labelledby="revoke-heading">
          <h3 id="revoke-heading">Revoke</h3>
          <ul class="revoke-list">
            {revocable.map((c) => (
              <li key={c.id}>
                Certificate {c.id} ({c.key_type}, {c.scheduled_revoke_at ? 'old, revoked after the grace period' : 'active'}, until {when(c.not_after)}){' '}
                <ConfirmAction
                  label="Revoke"
                  onOutcome={setOutcome}
                  ariaLabel={`Revoke certificate ${c.id}`}
                  danger
                  question={
                    <label>
                      Reason (RFC 5280)
                      <select name="reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)}>
                        {REVOCATION_REASON_NAMES.map((r) => (
                          <option key={r} value={r}>
                            {r}
                          </option>
                        ))}
                      </select>
                    </label>
                  }
                  run={async () => {
                    await call(client.POST('/api/v1/customer/certificates/{id}/revoke', { params: { path: { id: c.id } }, body: { reason } }));
                    props.onChanged();
                    return `Certificate ${c.id} revoked (${reason}); the CRL is being republished.`;
                  }}
                />
              </li>
            ))}
          </ul>
        </section>
      ) : null}
    </div>
  );
}

const KEY_TYPE_LABELS: Record<KeyType, string> = { 'ec-p256': 'EC P-256', 'rsa-2048': 'RSA 2048' };

function KeyTypeSelect(props: { name: string; value: KeyType; onChange: (k: KeyType) => void }) {
  return (
    <label>
      Key type
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value as KeyType)}>
        {Object.entries(KEY_TYPE_LABELS).map(([value, label]) => (
          <option key={value} value={value}>
            {label}
          </option>
        ))}
      </select>
    </label>
  );
}
