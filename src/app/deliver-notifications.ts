import { DELIVERY_HEADER, EVENT_HEADER, retryDelayMs, SIGNATURE_HEADER, signPayload, type RetryPolicy } from '../domain/notification-policy.ts';
import type { SecretSealer } from './ports.ts';
import type { AppDeps } from './deps.ts';
import type { ClaimedDelivery, DeliveryOutcome } from './storage-ports.ts';
import { DAY_MS } from '../domain/clock.ts';
import { jitteredDelayMs, type Random } from '../domain/backoff.ts';

/** One signed POST. Resolves with the HTTP status; rejects on network errors and timeouts. */
export interface WebhookRequest {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
}

export interface WebhookSender {
  post(request: WebhookRequest): Promise<{ status: number }>;
}

export interface DeliverySettings {
  /** Deliveries claimed per batch (one claim and one result statement per batch). */
  batchSize: number;
  /** At most this many per endpoint and batch: an endpoint with a backlog cannot starve the others. */
  perWebhook: number;
  /** Requests in flight at once. */
  concurrency: number;
  timeoutMs: number;
  /** How long a claimed delivery is hidden from other replicas; after that (a crash) it is retried. */
  claimMs: number;
  /** Batches per run at most, so one run ends. */
  maxBatches: number;
  retry: RetryPolicy;
  /** Delivered and dead rows older than this are deleted. */
  retentionMs: number;
  /**
   * Jitter of the retry delays (Math.random by default; a constant keeps a test's times exact):
   * each delay is drawn over [50 %, 100 %] of the policy's, so the deliveries that failed
   * together against a recovering endpoint do not all come back at the same instant.
   */
  random?: Random;
}

export const DEFAULT_DELIVERY_SETTINGS: Omit<DeliverySettings, 'retry'> = {
  batchSize: 100,
  perWebhook: 25,
  concurrency: 16,
  timeoutMs: 5_000,
  claimMs: 60_000,
  maxBatches: 20,
  retentionMs: 30 * DAY_MS,
};

const MAX_ERROR_LENGTH = 500;

/** Runs `fn` over `items` with at most `limit` at once; `fn` must not reject. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  const queue = items.entries(); // shared by the lanes: each item is taken once
  const lane = async () => {
    for (const [i, item] of queue) results[i] = await fn(item);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/**
 * Sends the queued alert events to the tenants' webhooks: signed JSON, a 2xx answer is a
 * delivery, anything else (status, timeout, refused connection) is retried with exponential
 * backoff until the retry policy gives up (DEAD). Each delivery is independent: one slow or
 * failing endpoint holds one lane for at most the timeout and never blocks the others. The
 * outbox is in Postgres, so deliveries survive restarts; a delivery is at-least-once (the
 * receiver dedupes on X-Certfleet-Delivery). No transaction is open while sending.
 */
export function createDeliverNotifications({
  storage,
  clock,
  sender,
  secrets,
  settings,
}: Pick<AppDeps, 'storage' | 'clock'> & { sender: WebhookSender; secrets: SecretSealer; settings: DeliverySettings }) {
  /** Secrets stored in plaintext before encryption at rest are encrypted by the first run of each process (they keep working meanwhile). */
  let legacySealed = false;
  const sealLegacySecrets = async () =>
    storage.asOperator(async ({ webhooks }) => {
      let n = 0;
      for (const { id, tenantId, secret } of await webhooks.listPlaintextSecrets()) {
        if (await webhooks.replaceStoredSecret(id, secret, secrets.seal(secret, { tenantId, webhookId: id }))) n++;
      }
      return n;
    });

  const failed = (d: ClaimedDelivery, statusCode: number | null, error: string): DeliveryOutcome => {
    const ruleDelay = retryDelayMs(settings.retry, d.attempt);
    const delay = ruleDelay === null ? null : jitteredDelayMs(ruleDelay, settings.random ?? Math.random);
    return {
      id: d.id,
      attempt: d.attempt,
      status: delay === null ? 'DEAD' : 'PENDING',
      deliveredAt: null,
      nextAttemptAt: delay === null ? null : new Date(clock.now().getTime() + delay),
      statusCode,
      error: error.slice(0, MAX_ERROR_LENGTH),
    };
  };

  /** `failing`: endpoints that already failed in this batch; their other deliveries wait for the retry instead of piling up. */
  const deliverOne = async (d: ClaimedDelivery, failing: Set<number>): Promise<DeliveryOutcome> => {
    if (failing.has(d.webhookId)) return failed(d, null, 'not sent: the endpoint failed earlier in this batch');
    let secret: string;
    try {
      secret = secrets.open(d.secret, { tenantId: d.tenantId, webhookId: d.webhookId });
    } catch (e) {
      failing.add(d.webhookId);
      return failed(d, null, `not sent: ${(e as Error).message}`);
    }
    const body = JSON.stringify({
      delivery_id: String(d.id),
      event: d.event,
      occurred_at: d.payload.occurred_at,
      delivered_at: clock.now().toISOString(),
      attempt: d.attempt,
      alert: d.payload.alert,
    });
    let statusCode: number | null = null;
    let error: string;
    try {
      const response = await sender.post({
        url: d.url,
        body,
        timeoutMs: settings.timeoutMs,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'certfleet-webhook/1',
          [EVENT_HEADER]: d.event,
          [DELIVERY_HEADER]: String(d.id),
          [SIGNATURE_HEADER]: signPayload(secret, body),
        },
      });
      statusCode = response.status;
      if (statusCode >= 200 && statusCode < 300) {
        return { id: d.id, attempt: d.attempt, status: 'DELIVERED', deliveredAt: clock.now(), nextAttemptAt: null, statusCode, error: null };
      }
      error = `HTTP ${statusCode}`;
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      error = [(e as Error).message || String(e), cause?.code ?? cause?.message].filter(Boolean).join(': ');
    }
    failing.add(d.webhookId);
    return failed(d, statusCode, error);
  };

  return async () => {
    const counts = { delivered: 0, retrying: 0, dead: 0, batches: 0, pruned: 0, secretsEncrypted: 0 };
    if (!legacySealed) {
      counts.secretsEncrypted = await sealLegacySecrets();
      legacySealed = true;
    }
    for (let batch = 0; batch < settings.maxBatches; batch++) {
      const now = clock.now();
      const claimed = await storage.asOperator(({ outbox }) =>
        outbox.claimDueDeliveries({ now, limit: settings.batchSize, perWebhook: settings.perWebhook, claimMs: settings.claimMs }),
      );
      if (claimed.length === 0) break;
      const failing = new Set<number>();
      const outcomes = await mapLimited(claimed, settings.concurrency, (d) => deliverOne(d, failing));
      await storage.asOperator(({ outbox }) => outbox.recordDeliveryOutcomes(outcomes));
      counts.batches++;
      for (const o of outcomes) {
        if (o.status === 'DELIVERED') counts.delivered++;
        else if (o.status === 'DEAD') counts.dead++;
        else counts.retrying++;
      }
    }
    const before = new Date(clock.now().getTime() - settings.retentionMs);
    counts.pruned = await storage.asOperator(({ outbox }) => outbox.pruneDeliveries(before, 10_000));
    return counts;
  };
}
