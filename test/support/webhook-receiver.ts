import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifySignature } from '../../src/domain/notification-policy.ts';

export interface ReceivedDelivery {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: any;
}

/**
 * A real HTTP receiver on 127.0.0.1 for webhook tests. Each path answers with the status
 * set for it (default 200), or never answers ('hang').
 */
export interface WebhookReceiver {
  url(path: string): string;
  respond(path: string, status: number | 'hang'): void;
  received(path?: string): ReceivedDelivery[];
  /** The deliveries to `path` whose X-Certfleet-Signature verifies with `secret`. */
  verified(path: string, secret: string): ReceivedDelivery[];
  clear(): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const statuses = new Map<string, number | 'hang'>();
  let deliveries: ReceivedDelivery[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (c: Buffer) => chunks.push(c));
    request.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const path = request.url ?? '/';
      let body: unknown = null;
      try {
        body = JSON.parse(raw);
      } catch {
        body = null;
      }
      deliveries.push({ path, headers: request.headers, raw, body });
      const status = statuses.get(path) ?? 200;
      if (status === 'hang') return; // never answers: the sender's timeout must end it
      response.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'nope');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    respond: (path, status) => void statuses.set(path, status),
    received: (path) => deliveries.filter((d) => path === undefined || d.path === path),
    verified: (path, secret) =>
      deliveries.filter((d) => d.path === path && verifySignature(secret, d.raw, d.headers['x-certfleet-signature'] as string | undefined)),
    clear: () => {
      deliveries = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
