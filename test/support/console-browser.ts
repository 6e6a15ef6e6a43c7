/** Chromium for the console tests (playwright-core, Debian's /usr/bin/chromium): launch, axe-core, and the page's console errors. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { expect } from 'vitest';
import { scaled } from './timeouts.ts';

export const CHROMIUM = '/usr/bin/chromium';
/** Without Debian's Chromium (`npm test` installs it as root) a console test shows as skipped, with the reason. */
export const HAS_CHROMIUM = existsSync(CHROMIUM);
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** axe-core in the page: the serious and critical violations (none expected). */
export async function seriousViolations(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') stays in force for the page itself.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, o: object): Promise<{ violations: AxeViolation[] }> } }).axe;
    return (await axe.run(document, { resultTypes: ['violations'] })).violations;
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

export interface ConsoleBrowser {
  context: BrowserContext;
  page: Page;
  /** Chromium's console errors and warnings, and page errors (none expected but those a test takes off). */
  consoleErrors: string[];
  /** For failure messages: the 4xx/5xx answers the page received. */
  failedResponses: string[];
  /** A deliberate API failure: Chromium logs the 4xx it received; exactly that one message is taken off the list. */
  expectLoggedHttpError(status: number): Promise<void>;
  close(): Promise<void>;
}

export const eventually = <T,>(fn: () => Promise<T> | T, options: { timeout?: number } = {}) => expect.poll(fn, { timeout: options.timeout ?? scaled(20_000), interval: 100 });

/** Chromium at 1366x768 that may contact only `origins` (no CDN). */
export async function launchConsoleBrowser(origins: string[]): Promise<ConsoleBrowser> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'certfleet-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1366, height: 768 },
    offline: false,
  });
  await context.route(/.*/, (route) => (origins.some((o) => route.request().url().startsWith(`${o}/`)) ? route.continue() : route.abort()));
  const page = context.pages()[0] ?? (await context.newPage());
  // Waits end as soon as the page is ready; the bound is for a machine shared with many builds.
  context.setDefaultTimeout(scaled(45_000));
  const consoleErrors: string[] = [];
  const failedResponses: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return {
    context,
    page,
    consoleErrors,
    failedResponses,
    async expectLoggedHttpError(status: number) {
      const match = (m: string) => m.includes(`Failed to load resource: the server responded with a status of ${status}`);
      await eventually(() => consoleErrors.some(match)).toBe(true);
      consoleErrors.splice(consoleErrors.findIndex(match), 1);
    },
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
