import { AppError } from '../domain/errors.ts';

/** The largest MQTT request certfleet reads (renewal, recovery, provisioning). */
export const MAX_REQUEST_BYTES = 64 * 1024;

/** An MQTT request's payload as a JSON object (`what` names it in the errors), or a 4xx AppError. */
export function parseJsonObject<T extends object>(payload: Buffer, what: string): T {
  if (payload.length > MAX_REQUEST_BYTES) throw new AppError('PAYLOAD_TOO_LARGE', `a ${what} is at most ${MAX_REQUEST_BYTES} bytes`);
  let message: unknown;
  try {
    message = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new AppError('MALFORMED_JSON', `the ${what} is not JSON`);
  }
  if (!message || typeof message !== 'object' || Array.isArray(message)) throw new AppError('VALIDATION_FAILED', `the ${what} must be a JSON object`);
  return message as T;
}
