import type { WebhookSender } from '../app/deliver-notifications.ts';

/** Response bodies are read (so the connection is reused) up to this size, then dropped. */
const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * POSTs with Node's fetch. Redirects are not followed (a redirect is not a delivery, and the
 * signed body must not travel to a URL the tenant did not register); the timeout covers
 * connecting, sending and the response headers.
 */
export function createHttpWebhookSender(): WebhookSender {
  return {
    async post({ url, body, headers, timeoutMs }) {
      const response = await fetch(url, { method: 'POST', body, headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
      try {
        const reader = response.body?.getReader();
        let read = 0;
        while (reader && read < MAX_RESPONSE_BYTES) {
          const chunk = await reader.read();
          if (chunk.done) break;
          read += chunk.value.byteLength;
        }
        await reader?.cancel().catch(() => undefined);
      } catch {
        // the status is what counts
      }
      return { status: response.status };
    },
  };
}
