/**
 * The enforcement check of a broker node: two real TLS handshakes (and an MQTT CONNECT) against
 * the node's own device listener. The revoked canary must be refused in the handshake ("certificate
 * revoked"), the valid canary must be accepted (CONNACK). The canaries are devices of the reserved
 * tenant `certfleet`: they connect, send nothing, and disconnect at once.
 */
import { randomUUID } from 'node:crypto';
import mqtt from 'mqtt';

export interface CanaryPair {
  valid: { certPem: string; keyPem: string };
  revoked: { certPem: string; keyPem: string; serial: string };
}

export interface CanaryTarget {
  /** The broker's device listener, e.g. `mqtts://localhost:8883`. */
  url: string;
  /** The CA of the broker's server certificate (PEM). */
  serverCaPem: string;
  timeoutMs?: number;
}

export type HandshakeOutcome = { outcome: 'accepted' } | { outcome: 'revoked' } | { outcome: 'refused'; error: string };

export interface CanaryCheck {
  result: 'passed' | 'failed';
  detail: string;
  valid: HandshakeOutcome;
  /** null: the applied CRL does not list the revoked canary yet (only the valid half ran). */
  revoked: HandshakeOutcome | null;
}

/** One connection attempt, no retry. */
export async function handshake(target: CanaryTarget, identity: { certPem: string; keyPem: string }): Promise<HandshakeOutcome> {
  try {
    const client = await mqtt.connectAsync(
      target.url,
      {
        ca: target.serverCaPem,
        cert: identity.certPem,
        key: identity.keyPem,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: target.timeoutMs ?? 5000,
        clean: true,
        clientId: `certfleet-canary-${randomUUID().slice(0, 8)}`,
        rejectUnauthorized: true,
      },
      false,
    );
    await client.endAsync(true);
    return { outcome: 'accepted' };
  } catch (error) {
    const message = (error as Error).message;
    return /certificate revoked/i.test(message) ? { outcome: 'revoked' } : { outcome: 'refused', error: message };
  }
}

/**
 * The CONNACK time-out of a canary handshake for a CRL of `crlBytes` (DER, every CA's): 5 s plus
 * 2 s per MiB, at most 120 s. A broker's handshake costs more with the CRL's size: RabbitMQ (OTP
 * ssl) decodes the whole CRL at every handshake (about 0.25 s of CPU at 100,000 entries, 4.7 MiB,
 * on this machine: 14 s of wall time at a load average of 40 on 2 cores, past a fixed 5 s), and a
 * Mosquitto handshake waits out the reload of its crlfile (1.6 s at 1,000,000 entries, quiet).
 * Only a broker that does not answer waits it out; an answer ends the handshake at once.
 */
export function canaryTimeoutMs(crlBytes: number): number {
  return Math.min(120_000, 5000 + Math.ceil((2000 * crlBytes) / (1024 * 1024)));
}

const describe = (o: HandshakeOutcome) => (o.outcome === 'refused' ? `refused (${o.error})` : o.outcome);

/**
 * Both handshakes, repeated while they fail (`retryDelaysMs`, default 0.1 to 1.6 s, 3.1 s in
 * all): a broker that has been signalled reloads a moment later, and Mosquitto 2.0 refuses
 * every handshake ("bad certificate") for a short while during its reload. Only a failure that
 * outlasts the retries is reported. `revokedListed`: the CRL the broker was given lists the revoked canary.
 * No attempt starts later than three handshake time-outs after the first: a broker that does not
 * answer at all is reported failed in about that time, not after every retry's time-outs (the
 * agent applies no newer CRL while it checks).
 */
export async function checkEnforcement(
  target: CanaryTarget,
  canaries: CanaryPair,
  revokedListed: boolean,
  retryDelaysMs: readonly number[] = [100, 200, 400, 800, 1600],
): Promise<CanaryCheck & { attempts: number }> {
  const lastStart = Date.now() + 3 * (target.timeoutMs ?? 5000);
  let attempts = 0;
  for (;;) {
    const check = await checkOnce(target, canaries, revokedListed);
    attempts++;
    const delay = retryDelaysMs[attempts - 1];
    if (check.result === 'passed' || delay === undefined || Date.now() + delay > lastStart) return { ...check, attempts };
    await new Promise((r) => setTimeout(r, delay));
  }
}

async function checkOnce(target: CanaryTarget, canaries: CanaryPair, revokedListed: boolean): Promise<CanaryCheck> {
  const revoked = revokedListed ? await handshake(target, canaries.revoked) : null;
  const valid = await handshake(target, canaries.valid);
  const problems: string[] = [];
  if (revoked && revoked.outcome !== 'revoked') problems.push(`the revoked canary was ${describe(revoked)}, not refused as revoked`);
  if (valid.outcome !== 'accepted') problems.push(`the valid canary was ${describe(valid)}`);
  const detail = problems.length
    ? problems.join('; ')
    : revoked
      ? 'revoked canary refused (certificate revoked), valid canary accepted'
      : 'valid canary accepted; the revoked canary is not in the applied CRL yet';
  return { result: problems.length ? 'failed' : 'passed', detail, valid, revoked };
}
