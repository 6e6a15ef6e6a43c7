/** Real MQTT clients for broker tests: the mosquitto_pub CLI and mqtt.js. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export interface TlsClientFiles {
  port: number;
  /** Default `localhost` (the server certificate's DNS SAN). */
  host?: string;
  /** Combined CA bundle (server CA + Device CA). */
  cafile: string;
  cert: string;
  key: string;
}

export interface MosquittoPubOptions extends TlsClientFiles {
  topic: string;
  message: string;
  qos?: 0 | 1 | 2;
  timeoutMs?: number;
}

export interface MosquittoPubResult {
  /** Exit code 0 and no "Publish ... failed" warning (mosquitto_pub exits 0 on a refused PUBACK). */
  ok: boolean;
  code: number | null;
  output: string;
}

export const MOSQUITTO_PUB_BIN = process.env.MOSQUITTO_PUB_BIN ?? 'mosquitto_pub';

export function publishWithMosquittoPub(options: MosquittoPubOptions): Promise<MosquittoPubResult> {
  const args = [
    '--cafile', options.cafile,
    '--cert', options.cert,
    '--key', options.key,
    '-h', options.host ?? 'localhost',
    '-p', String(options.port),
    '-V', '5',
    '-q', String(options.qos ?? 1),
    '-t', options.topic,
    '-m', options.message,
  ];
  return new Promise((resolve) => {
    const child = spawn(MOSQUITTO_PUB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      output += `\n[timed out after ${options.timeoutMs ?? 5000} ms]`;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 5000);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, code: null, output: `${output}${error.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const refused = /Publish \d+ failed|Error|refused/i.test(output);
      resolve({ ok: code === 0 && !refused, code, output: output.trim() });
    });
  });
}

export function tlsOptions(files: TlsClientFiles): IClientOptions {
  return {
    host: files.host ?? 'localhost',
    port: files.port,
    protocol: 'mqtts',
    ca: readFileSync(files.cafile),
    cert: readFileSync(files.cert),
    key: readFileSync(files.key),
    servername: files.host ?? 'localhost',
    rejectUnauthorized: true,
  };
}

/** Connect once (no retries); true on CONNACK, false on error/close/timeout. The client is closed. */
export async function connectWithMqttJs(files: TlsClientFiles & { timeoutMs?: number; protocolVersion?: 4 | 5 }): Promise<boolean> {
  const timeoutMs = files.timeoutMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  const attempt = mqtt
    .connectAsync(
      `mqtts://${files.host ?? 'localhost'}:${files.port}`,
      {
        ...tlsOptions(files),
        protocolVersion: files.protocolVersion ?? 5,
        reconnectPeriod: 0,
        connectTimeout: timeoutMs,
      },
      false,
    )
    .then(async (client) => {
      const ok = client.connected;
      await client.endAsync(true).catch(() => {});
      return ok;
    })
    .catch(() => false);
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs + 1000);
  });
  return Promise.race([attempt, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A long-lived mqtt.js session that reconnects by itself (like a device), recording its
 * connects and closes so tests can observe kicks and reconnects.
 */
export interface WatchedClient {
  client: MqttClient;
  connects: number;
  closes: number;
  errors: string[];
  readonly connected: boolean;
  waitFor(predicate: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  end(): Promise<void>;
}

export async function openWatchedClient(
  files: TlsClientFiles & { clientId?: string; reconnectPeriod?: number },
): Promise<WatchedClient> {
  const client = mqtt.connect({
    ...tlsOptions(files),
    protocolVersion: 5,
    clientId: files.clientId,
    reconnectPeriod: files.reconnectPeriod ?? 200,
    connectTimeout: 3000,
  });
  const watched: WatchedClient = {
    client,
    connects: 0,
    closes: 0,
    errors: [],
    get connected() {
      return client.connected;
    },
    async waitFor(predicate, timeoutMs = 30_000, what = 'condition') {
      const until = Date.now() + timeoutMs;
      while (!predicate()) {
        if (Date.now() > until) {
          throw new Error(`timed out waiting for ${what} (connects ${watched.connects}, closes ${watched.closes}, errors ${watched.errors.join(' | ')})`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async end() {
      await client.endAsync(true).catch(() => {});
    },
  };
  client.on('connect', () => watched.connects++);
  client.on('close', () => watched.closes++);
  client.on('error', (error) => watched.errors.push(error.message));
  await watched.waitFor(() => watched.connects > 0, 30_000, 'first connect');
  return watched;
}
