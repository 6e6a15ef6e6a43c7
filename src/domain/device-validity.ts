import { DAY_MS } from './clock.ts';
import { NOT_BEFORE_SKEW_MS } from './certificate.ts';
import { AppError } from './errors.ts';

export interface DeviceValidity {
  notBefore: Date;
  notAfter: Date;
  /** The requested validity would have outlived the CA: notAfter is the CA's notAfter. */
  cappedAtCaNotAfter: boolean;
}

const toSecond = (ms: number) => new Date(Math.floor(ms / 1000) * 1000);

/**
 * A device certificate's validity: backdated by NOT_BEFORE_SKEW_MS but never before the
 * CA's notBefore, and never after the CA's notAfter (RFC 5280 6.1: a certificate cannot be
 * valid longer than its issuer). An expired CA issues nothing.
 */
export function deviceValidity(input: { signedAt: Date; validityDays: number; ca: { notBefore: Date; notAfter: Date } }): DeviceValidity {
  const now = input.signedAt.getTime();
  const caNotAfter = input.ca.notAfter.getTime();
  if (now >= caNotAfter) {
    throw new AppError('CA_EXPIRED', `the Device CA expired at ${input.ca.notAfter.toISOString()}: it issues no more certificates (install a new Device CA)`, {
      ca_not_after: input.ca.notAfter.toISOString(),
    });
  }
  const notBefore = Math.max(now - NOT_BEFORE_SKEW_MS, input.ca.notBefore.getTime());
  const requested = now + input.validityDays * DAY_MS;
  const cappedAtCaNotAfter = requested > caNotAfter;
  const validity = { notBefore: toSecond(notBefore + 999), notAfter: toSecond(Math.min(requested, caNotAfter)), cappedAtCaNotAfter };
  if (validity.notAfter <= validity.notBefore) {
    // The clock is before the CA's notBefore by more than the requested validity.
    throw new AppError('CA_NOT_YET_VALID', `the Device CA is valid only from ${input.ca.notBefore.toISOString()}: a certificate signed now would end before it starts (check the clock)`, {
      ca_not_before: input.ca.notBefore.toISOString(),
    });
  }
  return validity;
}

export const capWarning = (notAfter: Date): string =>
  `The requested validity would outlive the Device CA: notAfter is capped at the CA's notAfter (${notAfter.toISOString()}).`;
