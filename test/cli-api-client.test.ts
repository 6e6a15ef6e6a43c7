/** The CLI's HTTP client against a loopback server: rate-limited requests are sent again after Retry-After. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, createApiClient, retryAfterMs } from '../src/cli/client/api-client.ts';

let server: Server;
let url: string;
const seen: string[] = [];
let limitedLeft = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (limitedLeft > 0) {
      limitedLeft--;
      res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': '0' });
      res.end(JSON.stringify({ status: 429, code: 'RATE_LIMITED', detail: 'slow down' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('CLI API client', () => {
  it('sends a rate-limited request again after Retry-After, then succeeds', async () => {
    seen.length = 0;
    limitedLeft = 2;
    const client = createApiClient({ url, token: 't' });
    expect(await client.post('/x/rotate', {})).toEqual({ ok: true });
    expect(seen).toEqual(['POST /x/rotate', 'POST /x/rotate', 'POST /x/rotate']);
  });

  it('gives up with the 429 as an ApiError after its attempts', async () => {
    seen.length = 0;
    limitedLeft = 10;
    const client = createApiClient({ url, token: 't', maxRateLimitRetries: 3 });
    const error = await client.get('/y').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe('RATE_LIMITED');
    expect(seen).toHaveLength(3);
  });

  it('reads Retry-After as seconds or an HTTP date, capped at a minute', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(null)).toBe(1000);
    expect(retryAfterMs('3600')).toBe(60_000);
    const now = Date.parse('2026-11-29T00:00:00Z');
    expect(retryAfterMs('Sun, 29 Nov 2026 00:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('soon')).toBe(1000);
  });
});
