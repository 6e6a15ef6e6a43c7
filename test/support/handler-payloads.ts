import { subscribe } from 'node:diagnostics_channel';
import { isDeepStrictEqual } from 'node:util';
import type { FastifyReply } from 'fastify';

/**
 * What route handlers hand to `reply.send`, before Fastify serializes it with the route's
 * response schema (fast-json-stringify drops properties the schema does not list and coerces
 * values to the declared types). Captured through Fastify's diagnostics channel
 * (`tracing:fastify.request.handler:start`, which carries the reply), keyed by the raw
 * ServerResponse, which `app.inject` hands back as `response.raw.res`.
 */
const payloads = new WeakMap<object, unknown>();
let installed = false;

export function captureHandlerPayloads(): void {
  if (installed) return;
  installed = true;
  subscribe('tracing:fastify.request.handler:start', (message) => {
    const { reply } = message as { reply: FastifyReply };
    const send = reply.send;
    // The first send is the handler's answer (an error handler's send comes later and is not the handler's payload).
    reply.send = function (this: FastifyReply, payload?: unknown) {
      if (!payloads.has(reply.raw)) payloads.set(reply.raw, payload);
      return send.call(this, payload);
    } as FastifyReply['send'];
  });
}

/** The payload the handler sent for this injected response (undefined when none was captured). */
export const handlerPayload = (response: { raw: { res: object } }): unknown => payloads.get(response.raw.res);

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;

/**
 * For a 2xx JSON answer: null when the body is exactly the handler's payload as JSON
 * (nothing dropped, nothing coerced), else what differs. Non-JSON answers and error answers
 * (problem+json) are not the handler's payload: null.
 */
export function serializationLoss(response: { statusCode: number; headers: Record<string, unknown>; body: string; raw: { res: object } }): string | null {
  if (response.statusCode < 200 || response.statusCode > 299) return null;
  const contentType = response.headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.startsWith('application/json')) return null;
  const payload = handlerPayload(response);
  if (!isPlainObject(payload)) return null;
  const expected: unknown = JSON.parse(JSON.stringify(payload));
  const actual: unknown = JSON.parse(response.body);
  if (isDeepStrictEqual(actual, expected)) return null;
  return differences(expected, actual).slice(0, 10).join('; ');
}

/** Paths where the serialized body differs from the handler's payload. */
function differences(expected: unknown, actual: unknown, path = '$'): string[] {
  if (isDeepStrictEqual(expected, actual)) return [];
  if (expected && actual && typeof expected === 'object' && typeof actual === 'object' && Array.isArray(expected) === Array.isArray(actual)) {
    const e = expected as Record<string, unknown>;
    const a = actual as Record<string, unknown>;
    return [...new Set([...Object.keys(e), ...Object.keys(a)])].flatMap((key) => {
      if (!(key in a)) return [`${path}.${key} dropped`];
      if (!(key in e)) return [`${path}.${key} added`];
      return differences(e[key], a[key], `${path}.${key}`);
    });
  }
  return [`${path}: sent ${JSON.stringify(expected)}, serialized ${JSON.stringify(actual)}`];
}
