/**
 * Slow and idle clients (slowloris) against a listener, plain or TLS. Each gives up by itself
 * after `maxTicks` ticks of `everyMs`; `closedByServer` says whether the server cut it off first.
 * Nothing here sleeps: a test awaits `connected` and `closedByServer`.
 */
import { get } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export type SlowKind =
  /** TCP connection that sends nothing. */
  | 'idle'
  /** TLS: completes the handshake, then sends nothing. */
  | 'tls-idle'
  /** TLS: the first bytes of a ClientHello, then one more byte per tick (the handshake never completes). */
  | 'client-hello'
  /** A request head, one header line per tick (over TLS when `tls`). */
  | 'header'
  /** A complete head announcing a large body, one byte per tick. */
  | 'body';

export interface Slow {
  socket: Socket;
  connected: Promise<void>;
  closedByServer: Promise<boolean>;
}

export interface SlowOptions {
  /** The header and body requests go over TLS (handshake first, certificate not checked). */
  tls?: boolean;
  /** The request paths of 'header' and 'body' (defaults: the API's /healthz and /auth/session). */
  headerPath?: string;
  bodyPath?: string;
}

/** A TLS 1.2/1.3 record header announcing a 512-byte handshake message, and the start of a ClientHello. */
const CLIENT_HELLO_START = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

export function slowClient(port: number, kind: SlowKind, everyMs: number, maxTicks: number, options: SlowOptions = {}): Slow {
  const overTls = kind === 'tls-idle' || (options.tls === true && (kind === 'header' || kind === 'body'));
  const socket: Socket = overTls
    ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' })
    : tcpConnect({ host: '127.0.0.1', port });
  let timer: NodeJS.Timeout | undefined;
  let gaveUp = false;
  const ready = overTls ? 'secureConnect' : 'connect';
  const connected = new Promise<void>((resolve, reject) => {
    socket.once(ready, resolve);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed before ${ready}`)));
  });
  connected.catch(() => undefined);
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const first: Record<SlowKind, string | Buffer> = {
    idle: '',
    'tls-idle': '',
    'client-hello': CLIENT_HELLO_START,
    header: `GET ${options.headerPath ?? '/healthz'} HTTP/1.1\r\nHost: 127.0.0.1\r\n`,
    body: `POST ${options.bodyPath ?? '/auth/session'} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`,
  };
  const tick = (n: number): string | Buffer => (kind === 'header' ? `X-Slow-${n}: 1\r\n` : kind === 'idle' || kind === 'tls-idle' ? '' : kind === 'client-hello' ? Buffer.from([0]) : ' ');
  socket.once(ready, () => {
    if (first[kind].length > 0) socket.write(first[kind]);
    let ticks = 0;
    timer = setInterval(() => {
      if (++ticks > maxTicks) {
        gaveUp = true;
        clearInterval(timer);
        socket.destroy();
        return;
      }
      const bytes = tick(ticks);
      if (!socket.destroyed && bytes.length > 0) socket.write(bytes);
    }, everyMs);
  });
  const closedByServer = new Promise<boolean>((resolve) =>
    socket.once('close', () => {
      clearInterval(timer);
      resolve(!gaveUp);
    }),
  );
  return { socket, connected, closedByServer };
}

/** GET /healthz on a fresh connection; resolves with the status or the error. */
export const healthz = (port: number) =>
  new Promise<number | string>((resolve) => {
    const req = get({ host: '127.0.0.1', port, path: '/healthz', agent: false, timeout: 60_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(e.message));
  });
