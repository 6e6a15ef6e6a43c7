/**
 * /docs (Swagger UI) is served with a Content-Security-Policy (red-team finding: it had none),
 * and the page still renders in Chromium under that policy: no CSP violation, no script error,
 * nothing loaded from elsewhere.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** The directives of a CSP header value. */
const directives = (header: unknown): Map<string, string[]> =>
  new Map(
    (typeof header === 'string' ? header : '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((parts) => parts[0] !== '')
      .map(([name, ...values]) => [name!, values]),
  );

describe('/docs Content-Security-Policy', () => {
  let database: TestDatabase;
  let t: TestService;

  beforeAll(async () => {
    database = await createTestDatabase('pglite');
    t = await startTestService(database);
  });
  afterAll(async () => {
    await t?.close();
    await database?.close();
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

  describe('in Chromium', () => {
    let context: BrowserContext;
    let userDataDir: string;
    let base: string;

    beforeAll(async () => {
      base = await t.service.app.listen({ host: '127.0.0.1', port: 0 });
      userDataDir = mkdtempSync(join(tmpdir(), 'certfleet-docs-chromium-'));
      context = await chromium.launchPersistentContext(userDataDir, { executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
      context.setDefaultTimeout(45_000);
    });
    afterAll(async () => {
      await context?.close();
      if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    });

    it('Swagger UI renders the operations under the policy, with no CSP violation or script error', async () => {
      const foreign: string[] = [];
      // Nothing but certfleet itself may be contacted (no CDN, no validator badge).
      await context.route(/.*/, (route) => {
        if (route.request().url().startsWith(`${base}/`)) return route.continue();
        foreign.push(route.request().url());
        return route.abort();
      });
      const page = context.pages()[0] ?? (await context.newPage());
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      await page.addInitScript(() => {
        document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
      });
      const response = await page.goto(`${base}/docs/`);
      expect(response?.headers()['content-security-policy']).toMatch(/script-src 'self'/);
      // Rendered from /docs/json: the title and an operation of the API.
      await page.locator('.swagger-ui .info .title').filter({ hasText: 'certfleet' }).waitFor();
      await page.locator('.opblock-summary-path', { hasText: '/api/v1/customer/devices' }).first().waitFor();
      // Expanding an operation runs more of Swagger UI's scripts and styles.
      await page.locator('.opblock-summary', { hasText: '/api/v1/customer/devices' }).first().click();
      await page.locator('.opblock-body').first().waitFor();
      expect(await page.evaluate(() => getComputedStyle(document.querySelector('.swagger-ui .opblock')!).borderStyle)).toBe('solid'); // the stylesheet applied
      expect(problems).toEqual([]);
      expect(foreign).toEqual([]);
    });
  });
});
