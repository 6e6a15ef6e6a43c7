import { useState } from 'preact/hooks';
import { call, client } from '../api/client';
import { when } from '../format';
import { ActionForm, ConfirmAction, Loading, Outcome, ShowOnce, useLoad, type ActionOutcome } from '../ui';

const SECRET_WARNING = 'The signing secret is shown once: store it where your receiver checks the X-Certfleet-Signature header. certfleet keeps it encrypted and never shows it again.';

/**
 * Webhook endpoints: create (secret shown once), enable or disable, rotate the secret, recent
 * deliveries. One outcome line for the page, above the webhooks: the latest action's result (or the
 * API's message) replaces the one before, whichever webhook it was about.
 */
export function WebhooksView() {
  const [refresh, setRefresh] = useState(0);
  const [outcome, setOutcome] = useState<ActionOutcome>({ result: null, error: null });
  const [secret, setSecret] = useState<{ id: number; value: string } | null>(null);
  const [url, setUrl] = useState('');
  const [description, setDescription] = useState('');
  const hooks = useLoad(() => call(client.GET('/api/v1/customer/notification-webhooks')), [refresh]);
  const changed = () => setRefresh((n) => n + 1);
  return (
    <section aria-labelledby="webhooks-heading">
      <h1 id="webhooks-heading">Webhooks</h1>
      <div class="action-outcome">
        <Outcome result={outcome.result} error={outcome.error} />
      </div>
      {secret ? (
        <ShowOnce title={`Signing secret of webhook ${secret.id}`} warning={SECRET_WARNING} value={secret.value} filename={`webhook-${secret.id}.secret`} onDismiss={() => setSecret(null)} />
      ) : null}
      <details>
        <summary role="button" class="secondary outline">
          Add a webhook
        </summary>
        <ActionForm
          label="Create webhook"
          onOutcome={setOutcome}
          question={() => (
            <p>
              Send alert events to <strong>{url}</strong>?
            </p>
          )}
          run={async () => {
            const r = await call(client.POST('/api/v1/customer/notification-webhooks', { body: { url: url.trim(), description: description.trim() || undefined } }));
            setSecret({ id: r.webhook.id, value: r.secret });
            changed();
            return `Webhook ${r.webhook.id} created.`;
          }}
        >
          <label>
            URL (https)
            <input name="url" type="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value)} />
          </label>
          <label>
            Description (optional)
            <input name="description" maxLength={200} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
          </label>
        </ActionForm>
      </details>
      <Loading loading={hooks.loading && !hooks.data} error={hooks.error} />
      {hooks.data?.webhooks.length === 0 ? <p>No webhooks yet.</p> : null}
      {hooks.data?.webhooks.map((w) => (
        <article key={w.id} aria-labelledby={`webhook-${w.id}`}>
          <h2 id={`webhook-${w.id}`} class="h4">
            Webhook {w.id}: <code class="wrap">{w.url}</code>
          </h2>
          <p>
            {w.description ?? 'No description'} · {w.enabled ? 'enabled' : 'disabled'} · created {when(w.created_at)}
          </p>
          <p class="inline-actions">
            <ConfirmAction
              label={w.enabled ? 'Disable' : 'Enable'}
              ariaLabel={`${w.enabled ? 'Disable' : 'Enable'} webhook ${w.id}`}
              secondary
              onOutcome={setOutcome}
              question={<p>{w.enabled ? 'Stop sending events to this endpoint?' : 'Send events to this endpoint again?'}</p>}
              run={async () => {
                await call(client.PATCH('/api/v1/customer/notification-webhooks/{id}', { params: { path: { id: w.id } }, body: { enabled: !w.enabled } }));
                changed();
                return `Webhook ${w.id} ${w.enabled ? 'disabled' : 'enabled'}.`;
              }}
            />{' '}
            <ConfirmAction
              label="Rotate secret"
              ariaLabel={`Rotate secret of webhook ${w.id}`}
              secondary
              onOutcome={setOutcome}
              question={<p>The old secret stops working at once. Continue?</p>}
              run={async () => {
                const r = await call(client.POST('/api/v1/customer/notification-webhooks/{id}/rotate-secret', { params: { path: { id: w.id } }, body: {} }));
                setSecret({ id: w.id, value: r.secret });
                return `New secret issued for webhook ${w.id}.`;
              }}
            />{' '}
            <ConfirmAction
              label="Delete"
              ariaLabel={`Delete webhook ${w.id}`}
              danger
              onOutcome={setOutcome}
              question={<p>Delete this webhook and its queued deliveries?</p>}
              run={async () => {
                await call(client.DELETE('/api/v1/customer/notification-webhooks/{id}', { params: { path: { id: w.id } }, body: {} }));
                changed();
                return `Webhook ${w.id} deleted.`;
              }}
            />
          </p>
          <details>
            <summary>Recent deliveries</summary>
            <Deliveries id={w.id} />
          </details>
        </article>
      ))}
    </section>
  );
}

function Deliveries({ id }: { id: number }) {
  const list = useLoad(() => call(client.GET('/api/v1/customer/notification-webhooks/{id}/deliveries', { params: { path: { id }, query: { limit: 20 } } })), [id]);
  return (
    <>
      <Loading loading={list.loading} error={list.error} />
      {list.data ? (
        <div class="overflow-auto">
          <table>
            <caption>Latest deliveries to webhook {id}</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Status</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last answer</th>
                <th scope="col">Error</th>
                <th scope="col">Queued</th>
              </tr>
            </thead>
            <tbody>
              {list.data.deliveries.length === 0 ? (
                <tr>
                  <td colSpan={6}>No deliveries yet.</td>
                </tr>
              ) : null}
              {list.data.deliveries.map((d) => (
                <tr key={d.id}>
                  <td>{d.event}</td>
                  <td>{d.status}</td>
                  <td>{d.attempts}</td>
                  <td>{d.last_status_code ?? '—'}</td>
                  <td class={d.last_error ? 'error' : undefined}>{d.last_error ?? '—'}</td>
                  <td>{when(d.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}
