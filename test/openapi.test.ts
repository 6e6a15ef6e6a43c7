/**
 * The OpenAPI document lists each operation once: the /customer and /operator aliases of
 * /api/v1/customer and /api/v1/operator are served but hidden from it. Every operation has a summary.
 * /docs (Swagger UI) is served with a Content-Security-Policy (red-team finding: it had none);
 * that the page renders under it in Chromium is test/web-console.test.ts's (one Chromium for both;
 * this was test/docs-csp.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

type Document = { paths: Record<string, Record<string, { summary?: string; operationId?: string }>> };
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

/** The directives of a CSP header value. */
const directives = (header: unknown): Map<string, string[]> =>
  new Map(
    (typeof header === 'string' ? header : '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((parts) => parts[0] !== '')
      .map(([name, ...values]) => [name!, values]),
  );

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

  it("every documented operation is listed in the README's HTTP API tables, in the table of its prefix", () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const api = readme.slice(readme.indexOf('## HTTP API'), readme.indexOf('\n## ', readme.indexOf('## HTTP API') + 1));
    const operatorAt = api.indexOf('| method and path (under `/api/v1/operator`');
    const otherAt = api.indexOf('| other routes |');
    expect(operatorAt).toBeGreaterThan(0);
    expect(otherAt).toBeGreaterThan(operatorAt);
    const tables = { customer: api.slice(0, operatorAt), operator: api.slice(operatorAt, otherAt), other: api.slice(otherAt) };
    const missing: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item).filter((m) => METHODS.includes(m))) {
        const prefix = /^\/api\/v1\/(customer|operator)(?=\/)/.exec(path);
        const table = prefix ? tables[prefix[1] as 'customer' | 'operator'] : tables.other;
        const listed = `\`${method.toUpperCase()} ${prefix ? path.slice(prefix[0].length) : path}`;
        if (!['`', '?', ' '].some((end) => table.includes(listed + end))) missing.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('still serves the hidden aliases', async () => {
    expect((await t.call('acme', 'GET', '/customer/devices')).status).toBe(200);
    expect((await t.call('acme', 'GET', '/api/v1/customer/devices')).status).toBe(200);
    expect((await t.call(null, 'GET', '/operator/devices')).status).toBe(200);
  });

  it('every /docs answer carries a policy that allows no inline or foreign script, no framing, no plugins', async () => {
    for (const url of ['/docs', '/docs/', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js', '/docs/static/swagger-ui.css', '/docs/json']) {
      const res = await t.service.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBeLessThan(400);
      const csp = directives(res.headers['content-security-policy']);
      expect(csp.get('default-src'), url).toEqual(["'self'"]);
      expect(csp.get('script-src'), url).toEqual(["'self'"]);
      expect(csp.get('object-src'), url).toEqual(["'none'"]);
      expect(csp.get('frame-ancestors'), url).toEqual(["'none'"]);
      expect(csp.get('base-uri'), url).toEqual(["'none'"]);
      for (const values of csp.values()) expect(values.join(' '), url).not.toMatch(/unsafe-inline|unsafe-eval|https:|\*/);
      expect(res.headers['x-content-type-options'], url).toBe('nosniff');
    }
  });
});
