/**
 * The EST listener's accept queue (listen backlog) is its connection cap: a renewal storm's burst
 * of connections waits in the kernel while the process is busy, instead of overflowing Node's
 * default queue of 511 (SYNs dropped: devices saw connect timeouts and resets). Read from the
 * kernel itself: `ss -ltn` shows a listening socket's backlog as its Send-Q.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBrokerConfig } from '../src/broker/write-broker-config.ts';
import { estListenBacklog } from '../src/composition/renewal.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const CAP = 2_000;

describe('EST listener backlog', () => {
  let database: TestDatabase;
  let t: TestService;
  let dir: string;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'certfleet-est-backlog-'));
    database = await createTestDatabase('pglite');
    const brokerDir = path.join(dir, 'broker');
    t = await startTestService(database, {
      env: { EST_PORT: '0', EST_HOST: '127.0.0.1', EST_TLS_CERT_PATH: path.join(brokerDir, 'server.crt'), EST_TLS_KEY_PATH: path.join(brokerDir, 'server.key'), EST_MAX_CONNECTIONS: String(CAP) },
    });
    await writeBrokerConfig({ outDir: brokerDir, deviceCaCertPem: t.service.ca.ca!.certPem, crlPath: t.config.crlOutputPath });
    const { est } = await t.service.renewal.start(t.service.app.log);
    port = Number(new URL(est!).port);
  });

  afterAll(async () => {
    await t?.close();
    await database?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is the connection cap (at least 511), as far as the kernel allows', () => {
    expect(estListenBacklog(100)).toBe(511);
    expect(estListenBacklog(CAP)).toBe(CAP);
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
    // State, Recv-Q (connections waiting to be accepted), Send-Q (the backlog), local address...
    const backlog = Number(line.split(/\s+/)[2]);
    expect(backlog, line).toBe(Math.min(CAP, somaxconn));
    // Node's default would be 511: the test means something only where the kernel allows more.
    expect(somaxconn).toBeGreaterThan(511);
  });
});
