/**
 * Disconnects the live MQTT sessions of a certificate's CN through Mosquitto's dynamic security
 * plugin. A CRL reload (SIGHUP) only affects new TLS handshakes: a revoked device that is already
 * connected stays connected. Measured on Mosquitto 2.0.11 (docs/broker-sessions.md):
 *
 * - `disableClient` and `deleteClient` disconnect every session whose username matches
 *   ("been disconnected by administrative action"); `createClient` and `enableClient` do not.
 * - Devices are not dynsec clients (their username is the certificate CN, no password is checked
 *   on the certificate listener), so for an unknown CN `disableClient` answers "Client not found".
 *   We then send `createClient` + `deleteClient` in one request: the plugin runs the commands in
 *   order, the delete kicks, and nothing is left behind. For a CN that *is* a dynsec client we send
 *   `disableClient` + `enableClient`, which kicks and restores it unchanged.
 * - The kick hits all sessions of the CN, including the device's new certificate (same CN). That
 *   device reconnects with its valid certificate; the revoked one fails the TLS handshake, *as
 *   long as the broker reloaded the CRL first*: call broker reload, then kick.
 */
import { randomUUID } from 'node:crypto';
import mqtt from 'mqtt';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';

export class SessionKickError extends Error {
  override readonly name = 'SessionKickError';
  readonly code = 'BROKER_KICK_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface SessionKickerOptions {
  /** Admin listener, e.g. `mqtt://127.0.0.1:8884` (or `mqtts://` with `ca`). */
  url: string;
  username: string;
  password: string;
  /** CA (PEM) for an `mqtts://` admin listener: the server CA. */
  ca?: string | Buffer;
  /** Per admin connection (connect + requests + responses). Default 5 s. */
  timeoutMs?: number;
}

export interface KickResult {
  commonName: string;
  /** Which command pair kicked the sessions. */
  method: 'disable-enable' | 'create-delete' | 'close-connections';
}

export interface SessionKicker {
  /** Disconnect every live session whose username (certificate CN) is `commonName`. */
  kick(commonName: string): Promise<KickResult>;
}

interface DynsecCommand {
  command: string;
  username?: string;
  correlationData?: string;
  [key: string]: unknown;
}

interface DynsecResponse {
  command: string;
  error?: string;
  correlationData?: string;
  data?: unknown;
}

export function createSessionKicker(options: SessionKickerOptions): SessionKicker {
  const timeoutMs = options.timeoutMs ?? 5000;

  /** One admin connection per kick: revocations are rare and this has no state to go stale. */
  async function withAdmin<T>(fn: (send: (commands: DynsecCommand[]) => Promise<DynsecResponse[]>) => Promise<T>): Promise<T> {
    const client = mqtt.connect(options.url, {
      username: options.username,
      password: options.password,
      ca: options.ca,
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      clean: true,
      clientId: `certfleet-kicker-${randomUUID().slice(0, 8)}`,
    });
    const pending = new Map<string, { resolve: (r: DynsecResponse) => void }>();
    let failure: Error | null = null;
    // Set by the client's event handlers while we await: read through a call, so that a check
    // before an await does not narrow the later ones to `null` (TypeScript cannot see the handlers).
    const failureSoFar = (): Error | null => failure;
    const failAll = (error: Error) => {
      failure ??= error;
      for (const [, p] of pending) p.resolve({ command: '', error: `__failed__` });
      pending.clear();
    };
    client.on('message', (topic, payload) => {
      if (topic !== DYNSEC_RESPONSE_TOPIC) return;
      let body: { responses?: DynsecResponse[] };
      try {
        body = JSON.parse(payload.toString('utf8')) as { responses?: DynsecResponse[] };
      } catch {
        // The waiting kicks fail now with the reason, instead of timing out without one.
        failAll(new SessionKickError(`the broker answered on ${DYNSEC_RESPONSE_TOPIC} with something that is not JSON`));
        return;
      }
      for (const response of body.responses ?? []) {
        const id = response.correlationData;
        if (id && pending.has(id)) {
          pending.get(id)!.resolve(response);
          pending.delete(id);
        }
      }
    });
    client.on('error', (error) => failAll(error));
    client.on('close', () => failAll(new SessionKickError('admin connection to the broker closed')));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      failAll(new SessionKickError(`talking to the broker admin listener ${options.url} timed out after ${timeoutMs} ms`));
      client.end(true);
    }, timeoutMs);

    try {
      await new Promise<void>((resolve, reject) => {
        const onConnect = () => {
          cleanup();
          resolve();
        };
        const onError = (error: Error) => {
          cleanup();
          reject(error);
        };
        const onClose = () => {
          cleanup();
          reject(new Error(timedOut ? `timed out after ${timeoutMs} ms` : 'connection closed before CONNACK'));
        };
        const cleanup = () => {
          client.off('connect', onConnect);
          client.off('error', onError);
          client.off('close', onClose);
        };
        client.on('connect', onConnect);
        client.on('error', onError);
        client.on('close', onClose);
      }).catch((error: Error) => {
        throw new SessionKickError(`cannot connect to the broker admin listener ${options.url} as ${options.username}: ${error.message}`, {
          cause: error,
        });
      });
      const granted = await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });
      const code = granted[0]?.qos;
      if (code === undefined || code > 2) {
        throw new SessionKickError(`broker refused the subscription to ${DYNSEC_RESPONSE_TOPIC} (code ${code}): is ${options.username} the dynsec admin?`);
      }

      const send = async (commands: DynsecCommand[]): Promise<DynsecResponse[]> => {
        if (failure) throw failure;
        const tagged = commands.map((c) => ({ ...c, correlationData: randomUUID() }));
        const answers = tagged.map(
          (c) =>
            new Promise<DynsecResponse>((resolve) => {
              pending.set(c.correlationData, { resolve });
            }),
        );
        const packet = await client.publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands: tagged }), { qos: 1 });
        const reasonCode = (packet as { reasonCode?: number } | undefined)?.reasonCode;
        if (reasonCode !== undefined && reasonCode >= 0x80) {
          throw new SessionKickError(`broker refused the dynsec command (PUBACK reason ${reasonCode}): is ${options.username} allowed to publish to ${DYNSEC_TOPIC}?`);
        }
        const responses = await Promise.all(answers);
        const failed = failureSoFar();
        if (failed) throw failed;
        return responses;
      };
      return await fn(send);
    } catch (error) {
      const failed = failureSoFar();
      if (timedOut && failed) throw failed;
      throw error;
    } finally {
      clearTimeout(timer);
      for (const [, p] of pending) p.resolve({ command: '', error: '__closed__' });
      pending.clear();
      await client.endAsync(true).catch(() => {});
    }
  }

  async function kickOnce(commonName: string): Promise<KickResult> {
    return withAdmin(async (send) => {
      const [disabled, enabled] = await send([
        { command: 'disableClient', username: commonName },
        { command: 'enableClient', username: commonName },
      ]);
      if (!disabled.error) {
        if (enabled.error) {
          throw new SessionKickError(`kicked ${commonName} but could not re-enable its dynsec client: ${enabled.error}`);
        }
        return { commonName, method: 'disable-enable' as const };
      }
      if (disabled.error !== 'Client not found') {
        throw new SessionKickError(`dynsec disableClient ${commonName} failed: ${disabled.error}`);
      }
      const [created, deleted] = await send([
        { command: 'createClient', username: commonName },
        { command: 'deleteClient', username: commonName },
      ]);
      if (created.error) {
        throw new SessionKickError(`dynsec createClient ${commonName} failed: ${created.error}`);
      }
      if (deleted.error) {
        throw new SessionKickError(`dynsec deleteClient ${commonName} failed: ${deleted.error} (a passwordless dynsec client may be left behind)`);
      }
      return { commonName, method: 'create-delete' as const };
    });
  }

  return {
    async kick(commonName: string): Promise<KickResult> {
      if (typeof commonName !== 'string' || commonName.length === 0) {
        throw new TypeError('kick: commonName must be a non-empty string');
      }
      if (commonName === options.username) {
        throw new SessionKickError('refusing to kick the dynsec admin itself');
      }
      return kickOnce(commonName);
    },
  };
}
