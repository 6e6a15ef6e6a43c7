/**
 * The canary handshakes' time-out grows with the CRL (RabbitMQ's OTP ssl decodes the whole CRL at
 * every handshake: at 100,000 entries a loaded host took longer than a fixed 5 s, and the node never
 * passed its check), and a broker that does not answer at all is reported failed after about three
 * time-outs, not after every retry's (the agent applies no newer CRL while it checks).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canaryTimeoutMs, checkEnforcement, type CanaryPair } from '../src/broker/agent/canary-check.ts';

describe('canaryTimeoutMs', () => {
  it('is 5 s for a small CRL, grows 2 s per MiB, and stops at 120 s', () => {
    expect(canaryTimeoutMs(0)).toBe(5000);
    expect(canaryTimeoutMs(1024 * 1024)).toBe(7000);
    // 100,000 entries: about 4.7 MiB of DER
    expect(canaryTimeoutMs(4_900_000)).toBeGreaterThanOrEqual(14_000);
    expect(canaryTimeoutMs(1024 ** 3)).toBe(120_000);
  });
});

describe('checkEnforcement against a broker that never answers', () => {
  let server: Server;
  let port = 0;
  const sockets = new Set<Socket>();
  let connections = 0;
  let dir = '';
  let pair: CanaryPair;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'canary-timeout-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=canary', '-days', '1', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
    const identity = { certPem: readFileSync(join(dir, 'c.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'k.pem'), 'utf8') };
    pair = { valid: identity, revoked: { ...identity, serial: '01' } };
    // accepts TCP connections and never sends a byte
    server = createServer((socket) => {
      connections++;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails after at most three time-outs of attempts, not after all six', async () => {
    const target = { url: `mqtts://127.0.0.1:${port}`, serverCaPem: readFileSync(join(dir, 'c.pem'), 'utf8'), timeoutMs: 300 };
    const check = await checkEnforcement(target, pair, true);
    expect(check.result).toBe('failed');
    expect(check.valid.outcome).toBe('refused');
    // each attempt is two handshakes of at least 300 ms each and no attempt starts after 900 ms: one or
    // two attempts (two when the host is quick enough), where the retry delays alone allow six
    expect(check.attempts).toBeGreaterThanOrEqual(1);
    expect(check.attempts).toBeLessThanOrEqual(2);
    expect(connections).toBe(2 * check.attempts);
  });
});
