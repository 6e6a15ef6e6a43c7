import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import type { WebhookSender } from '../app/deliver-notifications.ts';
import { isNonPublicAddress, PRIVATE_NETWORK_REFUSAL } from '../domain/network-policy.ts';

/** Response bodies are read (so the connection closes cleanly) up to this size, then dropped. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export class RefusedTargetError extends Error {
  readonly code = 'EWEBHOOKREFUSED';
}

/**
 * A DNS lookup that refuses the host when ANY of its addresses is non-public (so a name
 * resolving to both a public and an internal address, or rebinding between lookups, cannot
 * reach the internal one), and hands the socket exactly the addresses it checked.
 */
export function guardedLookup(resolve: typeof dnsLookup = dnsLookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { family: options.family ?? 0, hints: options.hints, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '', 0);
      const [first] = addresses;
      if (first === undefined) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
      // The resolved address is not named: last_error is shown to the tenant, internal addresses are not its business.
      if (addresses.some((a) => isNonPublicAddress(a.address))) return callback(new RefusedTargetError(`refused: ${hostname} resolves to a non-public address; ${PRIVATE_NETWORK_REFUSAL}`), '', 0);
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      callback(null, first.address, first.family);
    });
  };
}

/**
 * POSTs with node:http(s). Redirects are not followed (a redirect is not a delivery, and the
 * signed body must not travel to a URL the tenant did not register); the timeout covers
 * resolving, connecting, sending and the response headers. Unless `allowPrivateNetworks`,
 * loopback, private and link-local targets are refused: a literal IP before connecting, a
 * host name on every address it resolves to, and the connection uses the address checked.
 */
export function createHttpWebhookSender(options: { allowPrivateNetworks: boolean; lookup?: typeof dnsLookup }): WebhookSender {
  const lookup = options.allowPrivateNetworks ? undefined : guardedLookup(options.lookup);
  return {
    post({ url, body, headers, timeoutMs }) {
      const target = new URL(url);
      const host = target.hostname.replace(/^\[|\]$/g, '');
      if (!options.allowPrivateNetworks && isIP(host) && isNonPublicAddress(host)) {
        return Promise.reject(new RefusedTargetError(`refused: ${PRIVATE_NETWORK_REFUSAL}`));
      }
      const controller = new AbortController();
      const requestOptions: RequestOptions = {
        method: 'POST',
        hostname: host,
        port: target.port || undefined,
        path: `${target.pathname}${target.search}`,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        agent: false, // one connection per delivery: a pooled socket never outlives its check
        signal: controller.signal,
        ...(lookup ? { lookup } : {}),
      };
      const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
      return new Promise<{ status: number }>((resolve, reject) => {
        const timer = setTimeout(() => controller.abort(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs);
        const request = send(requestOptions, (response) => {
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0 });
          let read = 0;
          response.on('data', (chunk: Buffer) => {
            read += chunk.byteLength;
            if (read > MAX_RESPONSE_BYTES) response.destroy();
          });
          response.on('error', () => undefined); // the status is what counts
        });
        request.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        request.end(body);
      });
    },
  };
}
