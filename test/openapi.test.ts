/**
 * The OpenAPI document lists each operation once: the /customer and /operator aliases of
 * /api/v1/customer and /api/v1/operator are served but hidden from it. Every operation has a summary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

type Document = { paths: Record<string, Record<string, { summary?: string; operationId?: string }>> };
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

describe('OpenAPI document', () => {
  let database: TestDatabase;
  let t: TestService;
  let doc: Document;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
    const res = await t.service.app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    doc = res.json();
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
  });

  it('lists each operation once, under /api/v1 only, with a summary', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((m) => METHODS.includes(m))
        .map((method) => ({ path, method, summary: item[method].summary })),
    );
    expect(operations.length).toBeGreaterThan(20);
    // The same operation under two prefixes: strip the version prefix and compare.
    const keys = operations.map((o) => `${o.method.toUpperCase()} ${o.path.replace(/^\/api\/v1/, '')}`);
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
    expect(operations.filter((o) => /^\/(customer|operator)\//.test(o.path))).toEqual([]);
    expect(operations.filter((o) => !o.summary).map((o) => `${o.method} ${o.path}`)).toEqual([]);
    for (const path of ['/api/v1/operator/certificates', '/api/v1/operator/devices', '/api/v1/customer/devices']) expect(doc.paths).toHaveProperty(path);
  });

  it('still serves the hidden aliases', async () => {
    expect((await t.call('acme', 'GET', '/customer/devices')).status).toBe(200);
    expect((await t.call('acme', 'GET', '/api/v1/customer/devices')).status).toBe(200);
    expect((await t.call(null, 'GET', '/operator/devices')).status).toBe(200);
  });
});
