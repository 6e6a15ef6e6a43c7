import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { isNonPublicAddress, PRIVATE_NETWORK_REFUSAL } from '../domain/network-policy.ts';
import { guardedLookup } from './webhook-sender.ts';

/** The answer body is read up to this size (`{"approved": true|false, "reason": "..."}`). */
const MAX_ANSWER_BYTES = 16 * 1024;

export interface ApprovalAnswer {
  /** Only an explicit `{"approved": true}` in a 2xx answer approves. */
  approved: boolean;
  /** Why it was refused: the endpoint's `reason`, its status, a timeout or a network error. */
  reason: string | null;
  status: number | null;
  timedOut: boolean;
}

export interface ApprovalRequest {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
}

export type ApprovalClient = (request: ApprovalRequest) => Promise<ApprovalAnswer>;

/**
 * Asks a tenant's approval webhook (a synchronous call, unlike the alert webhooks' outbox): one
 * signed POST, no redirect followed, the same private-network refusal as the alert webhooks.
 * The timeout covers everything up to the full answer. Never rejects: any failure is a refusal.
 */
export function createApprovalClient(options: { allowPrivateNetworks: boolean }): ApprovalClient {
  const lookup = options.allowPrivateNetworks ? undefined : guardedLookup();
  return (request) => {
    const refused = (reason: string, extra: Partial<ApprovalAnswer> = {}): ApprovalAnswer => ({ approved: false, reason, status: null, timedOut: false, ...extra });
    let target: URL;
    try {
      target = new URL(request.url);
    } catch {
      return Promise.resolve(refused('the approval webhook URL is not valid'));
    }
    const host = target.hostname.replace(/^\[|\]$/g, '');
    if (!options.allowPrivateNetworks && isIP(host) && isNonPublicAddress(host)) return Promise.resolve(refused(PRIVATE_NETWORK_REFUSAL));
    return new Promise<ApprovalAnswer>((resolve) => {
      let settled = false;
      const finish = (answer: ApprovalAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(answer);
      };
      const controller = new AbortController();
      const timer = setTimeout(() => {
        finish(refused(`no answer within ${request.timeoutMs} ms`, { timedOut: true }));
        controller.abort();
      }, request.timeoutMs);
      const requestOptions: RequestOptions = {
        method: 'POST',
        hostname: host,
        port: target.port || undefined,
        path: `${target.pathname}${target.search}`,
        headers: { ...request.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(request.body)) },
        agent: false,
        signal: controller.signal,
        ...(lookup ? { lookup } : {}),
      };
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(requestOptions, (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.byteLength;
          if (read > MAX_ANSWER_BYTES) {
            response.destroy();
            finish(refused('the approval answer is too large', { status }));
          } else chunks.push(chunk);
        });
        response.on('error', () => finish(refused('the approval answer was cut off', { status })));
        response.on('end', () => {
          if (status < 200 || status > 299) return finish(refused(`the approval webhook answered HTTP ${status}`, { status }));
          let answer: { approved?: unknown; reason?: unknown } = {};
          try {
            answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof answer;
          } catch {
            return finish(refused('the approval answer is not JSON {"approved": true|false}', { status }));
          }
          const reason = typeof answer?.reason === 'string' ? answer.reason.slice(0, 200) : null;
          if (answer?.approved === true) return finish({ approved: true, reason, status, timedOut: false });
          finish(refused(reason ?? 'refused by the approval webhook', { status }));
        });
      });
      req.on('error', (e) => finish(refused(`the approval webhook could not be reached: ${e.message}`.slice(0, 300))));
      req.end(request.body);
    });
  };
}
