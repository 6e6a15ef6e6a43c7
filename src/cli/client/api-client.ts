/**
 * The CLI's one HTTP client for a running certfleet: bearer token, JSON in and out,
 * problem+json answers turned into ApiError (status, stable code, detail, body).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly body: Record<string, unknown>,
  ) {
    super(`${status} ${code}: ${detail}`);
    this.name = 'ApiError';
  }
}

/** certfleet could not be reached (connection refused, DNS, timeout). */
export class ConnectionError extends Error {
  constructor(url: string, cause: unknown) {
    super(`cannot reach certfleet at ${url}: ${(cause as Error).cause instanceof Error ? ((cause as Error).cause as Error).message : (cause as Error).message}`);
    this.name = 'ConnectionError';
  }
}

export type Query = Record<string, string | number | undefined>;

export interface ApiClient {
  readonly baseUrl: string;
  get<T>(path: string, query?: Query): Promise<T>;
  post<T>(path: string, body?: unknown): Promise<T>;
  put<T>(path: string, body: unknown): Promise<T>;
  /** A non-JSON resource (PEM, DER) as bytes. */
  getBytes(path: string): Promise<Buffer>;
}

export interface ApiClientOptions {
  url: string;
  token?: string;
  /** Per-request timeout; default 60 s (RSA key generation on a busy server takes a while). */
  timeoutMs?: number;
  /** Attempts of a request the server rate-limits (429, waiting Retry-After between them); default 8. */
  maxRateLimitRetries?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retry-After in seconds (or an HTTP date), capped at a minute; 1 s when absent or unreadable. */
export function retryAfterMs(header: string | null, now = Date.now()): number {
  if (header === null) return 1000;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - now;
  return Number.isFinite(ms) ? Math.min(60_000, Math.max(0, ms)) : 1000;
}

/** Tenant routes live under this prefix. */
export const CUSTOMER = '/api/v1/customer';

export function createApiClient(options: ApiClientOptions): ApiClient {
  const baseUrl = options.url.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 60_000;
  const maxRateLimitRetries = options.maxRateLimitRetries ?? 8;

  async function send(method: string, path: string, init: { query?: Query; body?: unknown; accept?: string } = {}): Promise<Response> {
    const url = new URL(baseUrl + path);
    for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: init.accept ?? 'application/json' };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await fetch(url, {
          method,
          headers,
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        throw new ConnectionError(baseUrl, e);
      }
      // A 429 was refused before anything happened: waiting as told and sending again is safe.
      if (response.status === 429 && attempt < maxRateLimitRetries) {
        await response.arrayBuffer();
        await sleep(retryAfterMs(response.headers.get('retry-after')));
        continue;
      }
      if (!response.ok) throw await toApiError(response);
      return response;
    }
  }

  return {
    baseUrl,
    async get<T>(path: string, query?: Query) {
      return (await (await send('GET', path, { query })).json()) as T;
    },
    async post<T>(path: string, body?: unknown) {
      return (await (await send('POST', path, { body: body ?? {} })).json()) as T;
    },
    async put<T>(path: string, body: unknown) {
      return (await (await send('PUT', path, { body })).json()) as T;
    },
    async getBytes(path: string) {
      return Buffer.from(await (await send('GET', path, { accept: '*/*' })).arrayBuffer());
    },
  };
}

async function toApiError(response: Response): Promise<ApiError> {
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { detail: text.slice(0, 500) };
  }
  const code = typeof body.code === 'string' ? body.code : `HTTP_${response.status}`;
  const detail = typeof body.detail === 'string' ? body.detail : typeof body.title === 'string' ? body.title : response.statusText;
  return new ApiError(response.status, code, detail, body);
}
