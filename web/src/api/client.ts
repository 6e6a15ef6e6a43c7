import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

/** An API failure, readable: the problem+json detail and its code (or what went wrong on the way). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export const csrfToken = (): string | null => {
  const m = /(?:^|;\s*)csrf_token=([^;]+)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : null;
};

/** The cookie session's CSRF double submit: every unsafe request echoes the csrf_token cookie. */
const csrf: Middleware = {
  onRequest({ request }) {
    const token = csrfToken();
    if (UNSAFE.has(request.method) && token) request.headers.set('X-CSRF-Token', token);
    return request;
  },
};

/** Typed from web/src/api/openapi.json, the saved copy of the service's /docs/json (a test keeps it current). */
export const client = createClient<paths>({ baseUrl: '', credentials: 'same-origin' });
client.use(csrf);

interface Problem {
  detail?: string;
  title?: string;
  code?: string;
}

export function problemMessage(status: number, body: unknown): ApiError {
  const p = (body && typeof body === 'object' ? body : {}) as Problem;
  const text = p.detail ?? p.title ?? (typeof body === 'string' && body ? body : `the server answered ${status}`);
  return new ApiError(p.code ? `${text} (${p.code})` : text, status, p.code ?? null);
}

/**
 * The data of an openapi-fetch call, or an ApiError. The data's type is the route's success
 * response schema in the OpenAPI document (schema.d.ts), as openapi-fetch infers it.
 */
export async function call<R>(request: Promise<{ data?: R; error?: unknown; response: Response }>): Promise<R> {
  let result: { data?: R; error?: unknown; response: Response };
  try {
    result = await request;
  } catch (e) {
    throw new ApiError(`could not reach certfleet: ${(e as Error).message}`, 0, null);
  }
  if (!result.response.ok) throw problemMessage(result.response.status, result.error);
  return result.data as R;
}
