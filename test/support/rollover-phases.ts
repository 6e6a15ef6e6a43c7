/**
 * The assertions both CA rollover proofs make (test/ca-rollover.test.ts through the API and EST,
 * test/ca-rollover-broker.test.ts on the CA publication alone), written once: a phase holds, the
 * broker's files hold the two CAs as wanted, every certificate of a dropped CA is refused, and at
 * the end no valid device was refused in any phase.
 */
import type * as x509 from '@peculiar/x509';
import { expect } from 'vitest';
import type { RunningMosquitto } from './mosquitto.ts';
import { brokerCovers, connectOnce, waitForBrokerTrust, type Credential, type HandshakeLoop } from './rollover.ts';
import { scaled } from './timeouts.ts';

/** Every device accepted again in this phase, and no failure so far (with which device and phase). */
export async function phaseHolds(loop: HandshakeLoop): Promise<void> {
  await loop.fleetSeenAfter(scaled(180_000));
  expect(loop.failures, 'valid devices refused').toEqual([]);
  expect(loop.probeFailures, 'revoked certificates accepted again').toEqual([]);
}

/**
 * Waits until each CA is in the broker's cafile with its CRL in the crlfile (`true`) or in neither
 * (`false`), and a reload was logged after the files last changed.
 */
export function waitForCas(
  broker: RunningMosquitto,
  files: { cafile: string; crlfile: string },
  since: number,
  want: ReadonlyArray<readonly [x509.X509Certificate, boolean]>,
  what: string,
): Promise<unknown> {
  return waitForBrokerTrust(
    broker,
    files,
    since,
    async (trust) => {
      for (const [ca, present] of want) {
        const c = await brokerCovers(trust, ca);
        if (present ? !(c.inCafile && c.crl) : c.inCafile || c.crl) return false;
      }
      return true;
    },
    what,
    scaled(60_000),
  );
}

/** Every credential is refused by the broker; the outcomes counted (printed by the caller). */
export async function expectAllRefused(target: { port: number; caPem: string | Buffer }, creds: readonly Credential[], what: string): Promise<Record<string, number>> {
  const outcomes: Record<string, number> = {};
  for (const cred of creds) {
    const outcome = await connectOnce(target, cred);
    expect(outcome, `${what} ${cred.serial}`).not.toBe('accepted');
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  return outcomes;
}

/** The end of a rollover: in every phase no valid device refused, the whole fleet accepted, revoked probes refused and never accepted again. */
export async function expectEveryPhaseHeld(loop: HandshakeLoop, phases: readonly string[], fleet: number): Promise<void> {
  await loop.stop();
  for (const phase of phases) {
    const c = loop.countsOf(phase);
    expect(c.validRefused, `${phase}: ${JSON.stringify(c.refusalReasons)}`).toBe(0);
    expect(c.devicesAccepted.size, phase).toBe(fleet);
    expect(c.probeRefused, `${phase}: revoked certificates probed and refused`).toBeGreaterThan(0);
    expect(c.probeAccepted, phase).toBe(0);
  }
  expect(loop.failures).toEqual([]);
}
