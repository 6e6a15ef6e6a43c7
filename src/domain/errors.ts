/**
 * The catalogue of stable error codes. HTTP status mapping lives in one place
 * (src/http/problem.ts); use cases only ever throw AppError with one of these codes.
 */
export const ERROR_CODES = [
  'VALIDATION_FAILED',
  'MALFORMED_JSON',
  'MALFORMED_URL',
  'URI_TOO_LONG',
  'UNSUPPORTED_MEDIA_TYPE',
  'PAYLOAD_TOO_LARGE',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'CSRF_FAILED',
  'NOT_FOUND',
  'DEVICE_NOT_FOUND',
  'DEVICE_EXISTS',
  'CERTIFICATE_NOT_FOUND',
  'CERTIFICATE_EXISTS',
  'CERTIFICATE_ALREADY_REVOKED',
  'CERTIFICATE_EXPIRED',
  'INVALID_DEVICE_ID',
  'RESERVED_ID',
  'INVALID_BROKER_GRANT',
  'REPLAYED_REQUEST',
  // Renewal with an expired certificate (issue 21, recovery after an offline period).
  'RECOVERY_DISABLED',
  'RECOVERY_WINDOW_PASSED',
  'RECOVERY_NOT_ALLOWED',
  'CERTIFICATE_SUPERSEDED',
  'INVALID_CSR',
  'INVALID_CERTIFICATE',
  'WEAK_KEY',
  'KEY_COMPROMISED',
  'KEY_IN_USE',
  'NO_PENDING_ROTATION',
  'ROTATION_PENDING',
  'ROTATION_COMPLETED',
  'ALERT_NOT_FOUND',
  'ALERT_CLOSED',
  'WEBHOOK_NOT_FOUND',
  'CA_NOT_CONFIGURED',
  'CA_EXPIRED',
  'CA_NOT_YET_VALID',
  'REVOCATION_REASON_NOT_ALLOWED',
  'RATE_LIMITED',
  'SERVICE_SATURATED',
  'LINT_FAILED',
  'CRL_NOT_AVAILABLE',
  'CONSOLE_NOT_BUILT',
  // factory (claim) onboarding
  'CLAIM_CA_NOT_FOUND',
  'CLAIM_CA_EXISTS',
  'INVALID_CRL',
  'CLAIM_CA_UNKNOWN',
  'CLAIM_CERT_EXPIRED',
  'CLAIM_CERT_REVOKED',
  'CLAIM_NOT_ADMITTED',
  'CLAIM_KEY_REUSED',
  'CLAIM_CERT_SHARED',
  'CLAIM_ALREADY_ENROLLED',
  'APPROVAL_REFUSED',
  // Device CA records (issue 19)
  'CA_NOT_FOUND',
  'CA_EXISTS',
  'CA_ACTIVE_EXISTS',
  'CA_STATUS_CONFLICT',
  'CA_HAS_ACTIVE_CERTIFICATES',
  'INVALID_CA_CERTIFICATE',
  'CA_KEY_MISMATCH',
  'CA_KEY_UNAVAILABLE',
  'TENANT_NOT_FOUND',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    /** RFC 9457 extension members: top-level fields of the problem document (e.g. the pending rotation). */
    readonly extensions?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const isAppError = (e: unknown): e is AppError => e instanceof AppError;
