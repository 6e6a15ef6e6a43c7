import { createHmac, timingSafeEqual } from 'node:crypto';
import { exponentialDelayMs } from './backoff.ts';
import { AppError } from './errors.ts';
import { isNonPublicAddress, PRIVATE_NETWORK_REFUSAL } from './network-policy.ts';

/** Webhook delivery rules. Pure (HMAC is computation, not I/O). */
export interface RetryPolicy {
  /** Delay after the first failed attempt; doubles with every further one. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** After this many failed attempts a delivery is DEAD (kept for inspection, never sent again). */
  maxAttempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { baseDelayMs: 30_000, maxDelayMs: 6 * 3_600_000, maxAttempts: 10 };

/** Delay before the next attempt after `attempts` failed ones (1, 2, ...): base · 2^(attempts-1), capped; null = give up. */
export function retryDelayMs(policy: RetryPolicy, attempts: number): number | null {
  if (attempts >= policy.maxAttempts) return null;
  return exponentialDelayMs(policy.baseDelayMs, policy.maxDelayMs, attempts);
}

export const SIGNATURE_HEADER = 'X-Certfleet-Signature';
export const EVENT_HEADER = 'X-Certfleet-Event';
export const DELIVERY_HEADER = 'X-Certfleet-Delivery';

/** `sha256=<hex HMAC-SHA256 of the raw body>` with the endpoint's secret. */
export const signPayload = (secret: string, body: string): string => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** What a receiver does: constant-time comparison of the header against its own HMAC. */
export function verifySignature(secret: string, body: string, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(signPayload(secret, body));
  const got = Buffer.from(header);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

export const MAX_WEBHOOK_URL_LENGTH = 2048;

/**
 * http(s) only, no credentials in the URL (they would end up in logs), no fragment and,
 * unless allowed, no literal loopback/private/link-local IP (host names are checked when
 * delivering, on the addresses they resolve to). Returns the normalised URL.
 */
export function assertWebhookUrl(raw: string, options: { allowPrivateNetworks: boolean }): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new AppError('VALIDATION_FAILED', 'url must be an absolute http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new AppError('VALIDATION_FAILED', 'url must use http or https');
  if (url.username || url.password) throw new AppError('VALIDATION_FAILED', 'url must not contain credentials; authenticate with the signature');
  if (url.hash) throw new AppError('VALIDATION_FAILED', 'url must not contain a fragment');
  if (!options.allowPrivateNetworks && isNonPublicAddress(url.hostname)) throw new AppError('VALIDATION_FAILED', `url: ${PRIVATE_NETWORK_REFUSAL}`);
  const normalised = url.toString();
  if (normalised.length > MAX_WEBHOOK_URL_LENGTH) throw new AppError('VALIDATION_FAILED', `url must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`);
  return normalised;
}
