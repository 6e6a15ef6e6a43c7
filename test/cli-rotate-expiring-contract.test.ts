/**
 * rotate-expiring against the rotation contract being added to the server: `GET /certificates`
 * takes `rotation=none`, and rotating a device with a pending rotation answers 409
 * ROTATION_PENDING with the pending rotation in the body. Until that server lands, a small
 * HTTP server here speaks that contract (the old behaviour runs against the real server in
 * cli-rotate-expiring.test.ts).
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiClient } from '../src/cli/client/api-client.ts';
import { Progress } from '../src/cli/progress.ts';
import { rotateExpiring } from '../src/cli/rotate-expiring.ts';

const soon = new Date(Date.now() + 5 * 86_400_000).toISOString();
const cert = (id: number, device: string) => ({
  id,
  tenant_id: 'acme',
  device_id: device,
  fingerprint_sha256: `f${id}`,
  status: 'ACTIVE',
  key_type: 'ec-p256',
  not_after: soon,
  scheduled_revoke_at: null,
  created_at: new Date().toISOString(),
});

describe('rotate-expiring with the new rotation contract', () => {
  const requests: string[] = [];
  let url: string;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json' }).end(JSON.stringify(body));
    const u = new URL(req.url!, 'http://x');
    if (req.method === 'GET' && u.pathname === '/api/v1/customer/certificates') {
      // The devices left out for a pending rotation are listed too (rotation=pending), to be counted as skipped.
      if (u.searchParams.get('rotation') === 'pending') return send(200, { certificates: [], total: 0, limit: 1000, next_cursor: null });
      expect(u.searchParams.get('rotation')).toBe('none');
      return send(200, { certificates: [cert(1, 'DEV-A'), cert(2, 'DEV-B')], total: 2, limit: 1000, next_cursor: null });
    }
    if (req.method === 'POST' && u.pathname === '/api/v1/customer/devices/DEV-A/certificates/rotate') {
      return send(201, { new_certificate: cert(3, 'DEV-A'), cert_pem: 'CERT-A', private_key_pem: 'KEY-A', ca_cert_pem: 'CA', old_certificates: [{ id: 1 }], grace_period_hours: 24, warning: '' });
    }
    if (req.method === 'POST' && u.pathname === '/api/v1/customer/devices/DEV-B/certificates/rotate') {
      // Rotated by someone else between the list and this request.
      return send(409, { type: 'about:blank', title: 'Conflict', status: 409, code: 'ROTATION_PENDING', detail: 'DEV-B has a pending rotation', rotation: { device_id: 'DEV-B', new_certificate: cert(9, 'DEV-B') } });
    }
    return send(404, { code: 'NOT_FOUND', detail: req.url });
  });

  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  it('asks the server to leave out pending rotations, and counts a 409 ROTATION_PENDING as skipped, not failed', async () => {
    const out = mkdtempSync(join(tmpdir(), 'certfleet-contract-'));
    const run = await rotateExpiring({
      api: createApiClient({ url, token: 't' }),
      out,
      withinMs: 30 * 86_400_000,
      dryRun: false,
      concurrency: 2,
      flags: {},
      progress: new Progress(null),
    });
    expect(run.serverFilters).toBe(true);
    const byDevice = Object.fromEntries(run.results.map((r) => [r.device_id, r.outcome]));
    expect(byDevice).toEqual({ 'DEV-A': 'rotated', 'DEV-B': 'pending' });
    expect(existsSync(join(out, 'DEV-A.key'))).toBe(true);
    expect(existsSync(join(out, 'DEV-B.key'))).toBe(false);
    // The server filters: no per-device check of the pending rotation is needed.
    expect(requests.filter((r) => r.includes('/certificates/rotation'))).toEqual([]);
  });
});
