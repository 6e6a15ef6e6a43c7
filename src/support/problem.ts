import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type ErrorCode } from '../domain/errors.ts';

/** The one place error codes become HTTP statuses. */
const STATUS: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 422,
  MALFORMED_JSON: 400,
  MALFORMED_URL: 400,
  URI_TOO_LONG: 414,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  CSRF_FAILED: 403,
  NOT_FOUND: 404,
  DEVICE_NOT_FOUND: 404,
  DEVICE_EXISTS: 409,
  CERTIFICATE_NOT_FOUND: 404,
  CERTIFICATE_EXISTS: 409,
  CERTIFICATE_ALREADY_REVOKED: 409,
  CERTIFICATE_EXPIRED: 409,
  INVALID_DEVICE_ID: 422,
  RESERVED_ID: 422,
  INVALID_BROKER_GRANT: 422,
  REPLAYED_REQUEST: 409,
  RECOVERY_DISABLED: 403,
  RECOVERY_WINDOW_PASSED: 403,
  RECOVERY_NOT_ALLOWED: 403,
  CERTIFICATE_SUPERSEDED: 403,
  INVALID_CSR: 422,
  INVALID_CERTIFICATE: 422,
  WEAK_KEY: 422,
  KEY_COMPROMISED: 422,
  KEY_IN_USE: 409,
  NO_PENDING_ROTATION: 404,
  ROTATION_PENDING: 409,
  ROTATION_COMPLETED: 409,
  ALERT_NOT_FOUND: 404,
  ALERT_CLOSED: 409,
  WEBHOOK_NOT_FOUND: 404,
  CA_NOT_CONFIGURED: 503,
  CA_EXPIRED: 503,
  CA_NOT_YET_VALID: 503,
  REVOCATION_REASON_NOT_ALLOWED: 422,
  RATE_LIMITED: 429,
  SERVICE_SATURATED: 503,
  LINT_FAILED: 500,
  CRL_NOT_AVAILABLE: 503,
  CONSOLE_NOT_BUILT: 503,
  CLAIM_CA_NOT_FOUND: 404,
  CLAIM_CA_EXISTS: 409,
  INVALID_CRL: 422,
  CLAIM_CA_UNKNOWN: 403,
  CLAIM_CERT_EXPIRED: 403,
  CLAIM_CERT_REVOKED: 403,
  CLAIM_NOT_ADMITTED: 403,
  CLAIM_KEY_REUSED: 422,
  CLAIM_CERT_SHARED: 409,
  CLAIM_ALREADY_ENROLLED: 409,
  APPROVAL_REFUSED: 403,
  CA_NOT_FOUND: 404,
  CA_EXISTS: 409,
  CA_ACTIVE_EXISTS: 409,
  CA_STATUS_CONFLICT: 409,
  CA_HAS_ACTIVE_CERTIFICATES: 409,
  INVALID_CA_CERTIFICATE: 422,
  CA_KEY_MISMATCH: 422,
  CA_KEY_UNAVAILABLE: 422,
  TENANT_NOT_FOUND: 404,
  INTERNAL: 500,
};

const TITLES: Partial<Record<number, string>> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict',
  413: 'Payload Too Large', 414: 'URI Too Long', 415: 'Unsupported Media Type', 422: 'Unprocessable Content', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};

/** An RFC 9457 problem object (also sent outside HTTP, e.g. on the MQTT renewal topics). */
export function problemOf(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
  const status = STATUS[code];
  return { type: `https://certfleet.dev/problems/${code.toLowerCase().replace(/_/g, '-')}`, title: TITLES[status] ?? 'Error', status, code, detail, ...extra };
}

export function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
  return reply.code(STATUS[code]).type('application/problem+json').send(problemOf(code, detail, extra));
}

/**
 * Errors the router raises before any route, hook or error handler runs (Fastify's
 * `frameworkErrors` option): without this they are Fastify's own JSON, not problem+json.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  // Fastify expects nothing back (the reply is thenable: returning it would look like a promise).
  switch (error.code) {
    case 'FST_ERR_BAD_URL':
      void sendProblem(reply, 'MALFORMED_URL', 'the URL path is not valid percent-encoded UTF-8');
      return;
    case 'FST_ERR_MAX_PARAM_LENGTH':
      void sendProblem(reply, 'URI_TOO_LONG', 'a path parameter is longer than the 512 characters any id can have');
      return;
  }
  request.log.error({ err: error }, 'unhandled framework error');
  void sendProblem(reply, 'INTERNAL', 'internal error; see the server log');
}

/** Maps every error to problem+json: our catalogue, Fastify's own errors, and anything else as 500. */
export function installErrorHandler(app: FastifyInstance) {
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 'NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`));
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof AppError) {
      const retryAfter = error.details?.retry_after_seconds;
      if (typeof retryAfter === 'number') reply.header('Retry-After', String(retryAfter));
      return sendProblem(reply, error.code, error.message, { ...error.extensions, ...(error.details ? { details: error.details } : {}) });
    }
    if (error.validation) {
      const errors = error.validation.map((v) => ({
        location: error.validationContext,
        field: v.instancePath ? v.instancePath.slice(1).replace(/\//g, '.') : ((v.params as { missingProperty?: string; additionalProperty?: string }).missingProperty ?? (v.params as { additionalProperty?: string }).additionalProperty ?? ''),
        message: v.message,
      }));
      const detail = errors.map((e) => `${e.location}${e.field ? `.${e.field}` : ''} ${e.message}`).join('; ');
      return sendProblem(reply, 'VALIDATION_FAILED', detail, { errors });
    }
    switch (error.code) {
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', 'send application/json');
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(reply, 'PAYLOAD_TOO_LARGE', 'request body too large');
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendProblem(reply, 'MALFORMED_JSON', 'invalid Content-Length');
    }
    if (error instanceof SyntaxError || error.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
      return sendProblem(reply, 'MALFORMED_JSON', `malformed JSON body: ${error.message}`);
    }
    if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      return sendProblem(reply, 'VALIDATION_FAILED', error.message);
    }
    request.log.error({ err: error }, 'unhandled error');
    return sendProblem(reply, 'INTERNAL', 'internal error; see the server log');
  });
}
