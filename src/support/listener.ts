/**
 * The one way certfleet builds a listening HTTP(S) server: slow clients (slowloris: trickled
 * headers or bodies, idle connections, a TLS handshake that never finishes) are cut off by
 * these limits, and connections beyond the cap are closed at once, so they cannot starve other
 * clients nor take the file descriptors the rest of the process needs. Used by the API
 * (src/http/app.ts), the EST listener (src/renewal/est-server.ts) and the worker's /metrics.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { TlsOptions } from 'node:tls';
import type { HttpLimits } from '../config.ts';

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** Node's per-server options for the limits (the connection cap is a property, set after creation). */
export function limitOptions(limits: HttpLimits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often expired head/request timers are checked: a fraction of the shortest limit.
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.headersTimeoutMs / 4))),
  };
}

/** A plain HTTP server with the limits. */
export function createLimitedServer(limits: HttpLimits, handler: Handler): HttpServer {
  const server = createHttpServer(limitOptions(limits), handler);
  server.maxConnections = limits.maxConnections;
  return server;
}

/**
 * An HTTPS server with the limits, and a TLS handshake timeout: a connection that has not
 * completed its handshake after `handshakeTimeoutMs` (idle, or a ClientHello trickled byte by
 * byte) is closed. The cap counts TCP connections, handshaken or not.
 */
export function createLimitedTlsServer(limits: HttpLimits, tls: TlsOptions & { handshakeTimeoutMs: number }, handler: Handler): HttpsServer {
  const { handshakeTimeoutMs, ...tlsOptions } = tls;
  const server = createHttpsServer({ ...tlsOptions, ...limitOptions(limits), handshakeTimeout: handshakeTimeoutMs }, handler);
  server.maxConnections = limits.maxConnections;
  return server;
}
