import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/support/logger.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService } from './support/service.ts';

/** A 10 s healthcheck must not write two info lines every 10 s: probe request lines only at debug. */
describe('health probes in the log', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase('pglite');
  });
  afterAll(async () => {
    await database?.close();
  });

  const run = async (level: string) => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const t = await startTestService(database, { env: { LOG_LEVEL: level }, overrides: { logger: createLogger({ level, destination }) } });
    try {
      for (const url of ['/healthz', '/readyz', '/healthz']) expect((await t.service.app.inject({ method: 'GET', url })).statusCode).toBe(200);
      expect((await t.service.app.inject({ method: 'GET', url: '/pki/ca.pem' })).statusCode).toBe(200);
    } finally {
      await t.close();
    }
    const about = (path: string) => lines.filter((l) => JSON.stringify(l).includes(`"${path}"`));
    return { probes: [...about('/healthz'), ...about('/readyz')], other: about('/pki/ca.pem') };
  };

  it('at info: no line for /healthz or /readyz, while other requests are logged', async () => {
    const { probes, other } = await run('info');
    expect(other.length).toBeGreaterThan(0); // request logging works at all
    expect(probes).toEqual([]);
  });

  it('at debug: the probes are logged', async () => {
    const { probes } = await run('debug');
    expect(probes.length).toBeGreaterThanOrEqual(3);
  });
});
