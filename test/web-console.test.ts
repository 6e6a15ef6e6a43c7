import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCheckCrlFreshness } from '../src/app/check-crl-freshness.ts';
import { createRaiseExpiryAlerts } from '../src/app/raise-expiry-alerts.ts';
import { createExpiryPolicy } from '../src/domain/expiry-policy.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { ensureWebBuilt } from './support/web-build.ts';
import { opensslCsr } from './support/openssl.ts';
import { scaled } from './support/timeouts.ts';
import { startOidcProvider } from './support/oidc-provider.ts';

const ARTIFACTS = join(process.cwd(), 'test-artifacts');
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const CHROMIUM = '/usr/bin/chromium';
/** Without Debian's Chromium (`npm test` installs it as root) the console test shows as skipped, with the reason. */
const HAS_CHROMIUM = existsSync(CHROMIUM);
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** axe-core in the page: the serious and critical violations (none expected). */
async function seriousViolations(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol: the page's CSP (script-src 'self') stays in force for the page itself.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(ctx: Document, o: object): Promise<{ violations: AxeViolation[] }> } }).axe;
    return (await axe.run(document, { resultTypes: ['violations'] })).violations;
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

describe.runIf(HAS_CHROMIUM)(`web console in Chromium${HAS_CHROMIUM ? '' : ` (skipped: no ${CHROMIUM}; apt-get install -y --no-install-recommends chromium)`}`, () => {
  let database: TestDatabase;
  let t: TestService;
  let context: BrowserContext;
  let page: Page;
  let base: string;
  let userDataDir: string;
  const consoleErrors: string[] = [];
  /** Nothing else may be contacted (no CDN); the OIDC test adds its provider. */
  const allowedOrigins = new Set<string>();
  /** For the failure message: which request Chromium's "Failed to load resource" was about. */
  const failedResponses: string[] = [];

  beforeAll(async () => {
    ensureWebBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    database = await createTestDatabase('pg');
    t = await startTestService(database);
    base = await t.service.app.listen({ host: '127.0.0.1', port: 0 });
    allowedOrigins.add(base);
    userDataDir = mkdtempSync(join(tmpdir(), 'certfleet-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1366, height: 768 },
      acceptDownloads: true,
      offline: false,
    });
    // Nothing but certfleet itself may be contacted: the page works without any CDN.
    await context.route(/.*/, (route) => ([...allowedOrigins].some((o) => route.request().url().startsWith(`${o}/`)) ? route.continue() : route.abort()));
    page = context.pages()[0] ?? (await context.newPage());
    // Waits end as soon as the page is ready; the bound is for a machine shared with many builds.
    context.setDefaultTimeout(scaled(45_000));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    });
  });

  afterAll(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await t?.close();
    await database?.close();
  });

  const eventually = <T,>(fn: () => Promise<T> | T, options: { timeout?: number } = {}) => expect.poll(fn, { timeout: options.timeout ?? 20_000, interval: 100 });

  /** A deliberate API failure: Chromium logs the 4xx it received; exactly that one message is taken off the list. */
  const expectLoggedHttpError = async (status: number) => {
    const match = (m: string) => m.includes(`Failed to load resource: the server responded with a status of ${status}`);
    await eventually(() => consoleErrors.some(match)).toBe(true);
    consoleErrors.splice(consoleErrors.findIndex(match), 1);
  };

  const confirmDialog = async (yes: RegExp) => {
    const dialog = page.getByRole('dialog');
    await eventually(() => dialog.isVisible()).toBe(true);
    await dialog.getByRole('button', { name: yes }).click();
    await eventually(() => dialog.isVisible()).toBe(false);
  };

  it('signs in with a token, runs the certificate lifecycle, shows alerts, CRL and audit, accessible at desktop and phone width', async () => {
    await page.goto(`${base}/`);
    expect(new URL(page.url()).pathname).toBe('/app/');
    await page.getByRole('heading', { name: 'certfleet console' }).waitFor();
    expect(await seriousViolations(page)).toEqual([]);

    // A bad token: a readable message next to the sign-in form, no blank page.
    await page.getByLabel('Access token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    await page.getByRole('alert').filter({ hasText: 'UNAUTHENTICATED' }).waitFor();
    await expectLoggedHttpError(401);

    await page.getByLabel('Access token').fill(await t.token('acme', 'customer'));
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    await page.getByRole('heading', { name: 'Devices & certificates' }).waitFor();
    const cookies = await context.cookies(base);
    expect(cookies.find((c) => c.name === 'certfleet_session')?.httpOnly).toBe(true);

    // Register a device (with its confirmation step), then again: the API's 409 is shown next to the form.
    await page.getByText('Register a device').click();
    await page.getByLabel('Device ID').first().fill('DEVICE-001');
    await page.getByRole('button', { name: 'Register device', exact: true }).click();
    await confirmDialog(/Yes, register device/);
    await page.getByRole('status').filter({ hasText: 'Device DEVICE-001 registered.' }).waitFor();
    await page.getByRole('button', { name: 'Register device', exact: true }).click();
    await confirmDialog(/Yes, register device/);
    await page.getByRole('alert').filter({ hasText: 'DEVICE_EXISTS' }).waitFor();
    await expectLoggedHttpError(409);

    // Generate: the private key is shown once with a warning and a download, and is in no browser storage.
    await page.getByRole('button', { name: 'Manage device DEVICE-001', exact: true }).click();
    await page.getByRole('heading', { name: 'Device DEVICE-001' }).waitFor();
    await page.getByLabel('Validity (days)').first().fill('5');
    await page.getByRole('button', { name: 'Generate certificate', exact: true }).click();
    await confirmDialog(/Yes, generate certificate/);
    await page.getByRole('status').filter({ hasText: /Certificate \d+ issued/ }).waitFor();
    // Results replace each other on the whole page: the registration's message (and its 409) is gone, the latest outcome is the only one.
    expect(await page.locator('main').getByRole('status').allTextContents()).toEqual([expect.stringMatching(/^Certificate \d+ issued/)]);
    expect(await page.locator('main').getByRole('alert').filter({ hasText: 'DEVICE_EXISTS' }).count()).toBe(0);
    const keyBox = page.getByRole('textbox', { name: /Private key of certificate/ });
    const keyPem = await keyBox.inputValue();
    expect(keyPem).toContain('PRIVATE KEY');
    await page.getByText('shown once').first().waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: /Download DEVICE-001-\d+\.key\.pem/ }).click()]);
    expect(readFileSync((await download.path())!, 'utf8')).toBe(keyPem);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    expect(stored).not.toContain('PRIVATE KEY');
    await page.getByRole('button', { name: 'I have stored it: hide it' }).click();
    expect(await page.getByText('PRIVATE KEY').count()).toBe(0);
    // How soon it expires, worded as the CLI words it (never "Days left 4" for 4 days and 23 hours).
    const deviceCerts = page.getByRole('table', { name: 'Certificates of DEVICE-001' });
    expect(await deviceCerts.getByRole('columnheader', { name: 'Expires' }).count()).toBe(1);
    await eventually(() => deviceCerts.getByRole('row').nth(1).textContent()).toContain('in 5 days');

    // The worker's expiry task raises the alert; the overview counts the certificate in the 7-day window.
    await createRaiseExpiryAlerts({ storage: t.service.deps.storage, clock: t.clock, policy: createExpiryPolicy() })();
    await page.getByRole('link', { name: 'Alerts' }).click();
    const alertRow = page.getByRole('row').filter({ hasText: 'CERT_EXPIRING' });
    await alertRow.waitFor();
    await eventually(() => page.locator('caption').filter({ hasText: /^\d+ alerts?$/ }).textContent()).toBe('1 alert'); // not "1 alerts"
    expect(await alertRow.textContent()).toContain('high');
    expect(await seriousViolations(page)).toEqual([]);

    // Keyboard only: tab to the alert's acknowledge button, open the dialog, confirm.
    let reached = false;
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.getAttribute('aria-label')?.startsWith('Acknowledge alert') ?? false);
    }
    expect(reached).toBe(true);
    // Escape cancels and gives the focus back to the button that opened the dialog; Enter at once
    // opens it again. The close event of the cancelled dialog arrives after that Enter: it must not
    // cancel the new dialog (it did, now and then, before: "Alert N acknowledged" never came).
    for (let round = 0; round < 5; round++) {
      await page.keyboard.press('Enter');
      await eventually(() => page.evaluate(() => document.activeElement?.closest('dialog') !== null)).toBe(true);
      await page.keyboard.press('Escape');
      await eventually(() => page.getByRole('dialog').isVisible()).toBe(false);
      await eventually(() => page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? '')).toMatch(/^Acknowledge alert/);
    }
    await page.keyboard.press('Enter');
    await eventually(() => page.getByRole('dialog').isVisible()).toBe(true);
    // The keyboard path is explicit: the dialog opens on Cancel (least destructive), Tab reaches the
    // confirmation, and Tab from the last button comes back to the first (focus trap), both ways.
    const focused = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
    await eventually(focused).toBe('Cancel');
    await page.keyboard.press('Tab');
    await eventually(focused).toMatch(/^Yes, acknowledge/);
    await page.keyboard.press('Tab');
    await eventually(focused).toBe('Cancel');
    await page.keyboard.press('Shift+Tab');
    await eventually(focused).toMatch(/^Yes, acknowledge/);
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: /Alert \d+ acknowledged/ }).waitFor();
    // The default filter is what needs attention (open or acknowledged): the acknowledged alert
    // stays in the list, marked so; the outcome is shown outside the table.
    await eventually(() => alertRow.filter({ hasText: 'ACKNOWLEDGED' }).count()).toBe(1);
    expect(await alertRow.getByRole('button', { name: /^Acknowledge alert/ }).isDisabled()).toBe(true);
    expect(await page.getByRole('status').filter({ hasText: /Alert \d+ acknowledged/ }).isVisible()).toBe(true);
    // The filters are the URL: a reload shows the same alerts with the same filters.
    const alertFilters = page.getByRole('search', { name: 'Filter alerts' });
    await alertFilters.getByLabel('Status').selectOption('ACKNOWLEDGED');
    await alertFilters.getByLabel('Minimum severity').selectOption('4');
    await alertFilters.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => new URL(page.url()).hash).toBe('#/alerts?min_severity=4&status=ACKNOWLEDGED');
    await page.reload();
    await alertRow.filter({ hasText: 'ACKNOWLEDGED' }).waitFor();
    expect(await alertFilters.getByLabel('Status').inputValue()).toBe('ACKNOWLEDGED');
    expect(await alertFilters.getByLabel('Minimum severity').inputValue()).toBe('4');
    await alertFilters.getByLabel('Status').selectOption('OPEN');
    await alertFilters.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No alerts match.').waitFor();
    await page.goBack(); // Back: the previous filters
    await alertRow.filter({ hasText: 'ACKNOWLEDGED' }).waitFor();

    // Issue from a pasted CSR (the key stays on the device), then rotate, confirm, revoke.
    await page.getByRole('link', { name: 'Devices & certificates' }).click();
    await page.getByRole('button', { name: 'Manage device DEVICE-001', exact: true }).click();
    await page.getByText('No rotation pending.').waitFor();
    await page.getByLabel('PKCS#10 CSR (PEM)').fill(opensslCsr('ec-p256').csrPem);
    await page.getByRole('button', { name: 'Issue from CSR', exact: true }).click();
    await confirmDialog(/Yes, issue from csr/);
    await page.getByRole('status').filter({ hasText: /Certificate \d+ issued from the CSR/ }).waitFor();
    expect(await page.getByRole('textbox', { name: /Private key/ }).count()).toBe(0);
    await page.getByLabel('Grace period (hours)').fill('48');
    await page.getByRole('button', { name: 'Rotate certificate', exact: true }).click();
    await confirmDialog(/Yes, rotate certificate/);
    await page.getByRole('status').filter({ hasText: /New certificate \d+ issued/ }).waitFor();
    await page.getByText(/Rotation pending: new certificate \d+/).waitFor();
    await page.getByRole('button', { name: 'I have stored it: hide it' }).click();
    await page.getByRole('button', { name: 'Confirm rotation', exact: true }).click();
    await confirmDialog(/Yes, confirm rotation/);
    await page.getByRole('status').filter({ hasText: 'Rotation confirmed' }).waitFor();
    await page.getByText('No rotation pending.').waitFor();
    // Rotate again and cancel: the new certificate never reached the device, the current one stays valid.
    // Its key (not hidden this time) is no longer offered: its certificate is revoked.
    await page.getByRole('button', { name: 'Rotate certificate', exact: true }).click();
    await confirmDialog(/Yes, rotate certificate/);
    await page.getByText(/Rotation pending: new certificate \d+/).waitFor();
    const keyDownload = page.getByRole('button', { name: /Download DEVICE-001-\d+\.key\.pem/ });
    expect(await keyDownload.count()).toBe(1);
    await page.getByRole('button', { name: 'Cancel rotation', exact: true }).click();
    await confirmDialog(/Yes, cancel rotation/);
    await page.getByRole('status').filter({ hasText: 'Rotation cancelled' }).waitFor();
    await page.getByText('No rotation pending.').waitFor();
    await eventually(() => keyDownload.count()).toBe(0);
    expect(await page.getByText('PRIVATE KEY').count()).toBe(0);
    // Results replace each other: one outcome line for the device, the latest.
    const deviceOutcomes = page.locator('.device-actions').getByRole('status');
    expect(await deviceOutcomes.allTextContents()).toEqual([expect.stringContaining('Rotation cancelled')]);
    // Only revocable (ACTIVE) certificates are offered for revocation.
    const revoke = page.getByRole('button', { name: /Revoke certificate \d+/ });
    await eventually(() => revoke.count()).toBe(1);
    expect(await revoke.isEnabled()).toBe(true);
    const revokedId = (await revoke.getAttribute('aria-label'))!.replace(/\D+/g, '');
    await revoke.click();
    // The reasons are the API's own (its OpenAPI RevocationReason): none that it would refuse.
    const reasons = page.getByRole('dialog').getByLabel('Reason (RFC 5280)');
    await reasons.waitFor();
    await eventually(() => reasons.locator('option').count()).toBeGreaterThan(0);
    const offered = await reasons.locator('option').allTextContents();
    const allowed = (await (await page.request.get(`${base}/docs/json`)).json()).components.schemas.RevocationReason.enum;
    expect(offered).toEqual(allowed);
    for (const refused of ['certificateHold', 'cACompromise', 'aACompromise', 'removeFromCRL']) expect(offered).not.toContain(refused);
    await reasons.selectOption('keyCompromise');
    await confirmDialog(/Yes, revoke/);
    await page.getByRole('status').filter({ hasText: `Certificate ${revokedId} revoked (keyCompromise)` }).waitFor();
    expect(await deviceOutcomes.count()).toBe(1);
    expect(await seriousViolations(page)).toEqual([]);

    // CRL: status with both revocations once published, and the PEM download.
    await page.getByRole('link', { name: 'CRL' }).click();
    await expect
      .poll(async () => {
        await page.reload();
        await page.getByRole('heading', { name: 'Certificate revocation list' }).waitFor();
        const entries = page.locator('dt:text-is("Entries") + dd');
        await entries.waitFor();
        return Number(await entries.textContent());
      }, { timeout: 60_000 })
      .toBe(4); // with the cancelled rotation's new certificate
    const [crl] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CRL (PEM)' }).click()]);
    expect(readFileSync((await crl.path())!, 'utf8')).toContain('-----BEGIN X509 CRL-----');
    expect(await seriousViolations(page)).toEqual([]);

    // Audit: every action of this test, filterable by action.
    await page.getByRole('link', { name: 'Audit log' }).click();
    const auditTable = page.getByRole('table', { name: 'Audit events, newest first' });
    await auditTable.waitFor();
    for (const action of ['device.registered', 'certificate.issued', 'certificate.rotated', 'rotation.confirmed', 'rotation.cancelled', 'certificate.revoked', 'alert.acknowledged']) {
      await auditTable.getByRole('cell', { name: action, exact: true }).first().waitFor();
    }
    await page.getByLabel('Action').fill('certificate.revoked');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => auditTable.getByRole('cell', { name: 'device.registered', exact: true }).count()).toBe(0);
    expect(await auditTable.getByRole('cell', { name: 'certificate.revoked', exact: true }).count()).toBeGreaterThan(0);
    expect(new URL(page.url()).hash).toBe('#/audit?action=certificate.revoked');
    await page.reload(); // the same filtered log, the same field
    await auditTable.getByRole('cell', { name: 'certificate.revoked', exact: true }).first().waitFor();
    expect(await auditTable.getByRole('cell', { name: 'device.registered', exact: true }).count()).toBe(0);
    expect(await page.getByLabel('Action').inputValue()).toBe('certificate.revoked');
    expect(await seriousViolations(page)).toEqual([]);

    // Webhooks: the signing secret is shown once; disable the endpoint.
    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    await page.getByText('Add a webhook').click();
    await page.getByLabel('URL (https)').fill('https://hooks.example.com/certfleet');
    await page.getByRole('button', { name: 'Create webhook', exact: true }).click();
    await confirmDialog(/Yes, create webhook/);
    await page.getByRole('status').filter({ hasText: /Webhook \d+ created/ }).waitFor();
    const firstSecret = await page.getByRole('textbox', { name: /Signing secret of webhook/ }).inputValue();
    expect(firstSecret).toMatch(/^whsec_/);
    await page.getByRole('button', { name: 'I have stored it: hide it' }).click();
    // Rotating the secret shows the new one, once.
    await page.getByRole('button', { name: /^Rotate secret of webhook \d+$/ }).click();
    await confirmDialog(/Yes, rotate secret/);
    await page.getByRole('status').filter({ hasText: /^New secret issued for webhook \d+\.$/ }).waitFor();
    const rotatedSecret = await page.getByRole('textbox', { name: /Signing secret of webhook/ }).inputValue();
    expect(rotatedSecret).toMatch(/^whsec_/);
    expect(rotatedSecret).not.toBe(firstSecret);
    await page.getByRole('button', { name: 'I have stored it: hide it' }).click();
    await page.getByRole('button', { name: /^Disable webhook \d+$/ }).click();
    await confirmDialog(/Yes, disable/);
    await page.getByRole('status').filter({ hasText: /Webhook \d+ disabled/ }).waitFor();
    await page.getByText('Recent deliveries').click();
    await page.getByText('No deliveries yet.').waitFor();
    // Results replace each other: one outcome for the page, not one per button of each webhook.
    const webhookOutcomes = () => page.locator('main').getByRole('status').allTextContents();
    expect(await webhookOutcomes()).toEqual([expect.stringMatching(/^Webhook \d+ disabled\.$/)]);
    // (the "Add a webhook" form is still open)
    await page.getByLabel('URL (https)').fill('https://hooks.example.com/second');
    await page.getByRole('button', { name: 'Create webhook', exact: true }).click();
    await confirmDialog(/Yes, create webhook/);
    await eventually(webhookOutcomes).toEqual([expect.stringMatching(/^Webhook \d+ created\.$/)]);
    await page.getByRole('button', { name: 'I have stored it: hide it' }).click();
    await page.getByRole('button', { name: /^Enable webhook \d+$/ }).click();
    await confirmDialog(/Yes, enable/);
    await eventually(webhookOutcomes).toEqual([expect.stringMatching(/^Webhook \d+ enabled\.$/)]);
    expect(await seriousViolations(page)).toEqual([]);

    // More of a fleet (through the API): the expiry overview counts it per window.
    for (const [device, days] of [['SENSOR-7', 5], ['SENSOR-20', 20], ['SENSOR-60', 60], ['SENSOR-365', 365]] as const) {
      expect((await t.call('acme', 'POST', '/api/v1/customer/devices', { device_id: device, site_id: 'plant-1' })).status).toBe(201);
      const issued = await t.call('acme', 'POST', `/api/v1/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256', validity_days: days });
      expect(issued.status).toBe(201);
    }
    await page.getByRole('link', { name: 'Devices & certificates' }).click();
    await page.getByText('1 within 7 days, 2 within 30 days, 3 within 90 days').waitFor();

    // Find a device server-side: id prefix, then by soonest expiry; the search and the open device are in the URL.
    const search = page.getByRole('search', { name: 'Search devices' });
    await search.getByLabel('Device ID starts with').fill('SENSOR-');
    await search.getByLabel('Sort by').selectOption('expiry');
    await search.getByRole('button', { name: 'Apply filters' }).click();
    const deviceTable = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Next expiry' }) });
    const deviceCells = () => deviceTable.locator('tbody tr td:first-child').allTextContents();
    await eventually(deviceCells).toEqual(['SENSOR-7', 'SENSOR-20', 'SENSOR-60', 'SENSOR-365']);
    expect(await deviceTable.locator('tbody tr').first().textContent()).toMatch(/active.*in 5 days/);
    expect(new URL(page.url()).hash).toBe('#/fleet?id_prefix=SENSOR-&sort=expiry');
    await page.getByRole('button', { name: 'Manage device SENSOR-20', exact: true }).click();
    await page.getByRole('heading', { name: 'Device SENSOR-20' }).waitFor();
    expect(new URL(page.url()).hash).toBe('#/fleet?id_prefix=SENSOR-&sort=expiry&device=SENSOR-20');
    await page.reload(); // a deep link survives a reload: the same device open, the same search
    await page.getByRole('heading', { name: 'Device SENSOR-20' }).waitFor();
    await eventually(deviceCells).toEqual(['SENSOR-7', 'SENSOR-20', 'SENSOR-60', 'SENSOR-365']);
    expect(await search.getByLabel('Device ID starts with').inputValue()).toBe('SENSOR-');
    // The certificate list's filters are in the URL too (keys of their own), next to the device search and the open device.
    const certFilters = page.getByRole('search', { name: 'Filter certificates' });
    const certTable = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Issuing CA' }) }).first();
    await certFilters.getByLabel('Status').selectOption('REVOKED');
    await certFilters.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => new URL(page.url()).hash).toBe('#/fleet?id_prefix=SENSOR-&sort=expiry&device=SENSOR-20&cert_status=REVOKED');
    const certStatuses = () => page.locator('#certs-heading ~ div table tbody tr td:nth-child(3) .badge').allTextContents();
    const revokedFour = ['REVOKED', 'REVOKED', 'REVOKED', 'REVOKED']; // DEVICE-001's
    await eventually(certStatuses).toEqual(revokedFour);
    await page.reload();
    await page.getByRole('heading', { name: 'Device SENSOR-20' }).waitFor();
    await eventually(certStatuses).toEqual(revokedFour);
    expect(await certFilters.getByLabel('Status').inputValue()).toBe('REVOKED');
    await eventually(deviceCells).toEqual(['SENSOR-7', 'SENSOR-20', 'SENSOR-60', 'SENSOR-365']);
    // Each certificate names its issuing CA (the API's ca_id, shown by the subject the tenant's GET /cas gives).
    const [issuing] = (await (await page.request.get(`${base}/api/v1/customer/cas`)).json()).cas;
    expect(issuing).toMatchObject({ signs_new_certificates: true, active_certificates: 4 }); // the four SENSOR devices'
    await eventually(() => certTable.locator('td.issuing-ca').first().textContent()).toBe(issuing.subject);
    expect(await certTable.locator('td.issuing-ca span').first().getAttribute('title')).toBe(issuing.id);
    await certFilters.getByLabel('Status').selectOption('');
    await certFilters.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => new URL(page.url()).hash).toBe('#/fleet?id_prefix=SENSOR-&sort=expiry&device=SENSOR-20');
    await page.getByRole('button', { name: 'Close device SENSOR-20' }).click();
    await search.getByRole('combobox', { name: /^Certificate/ }).selectOption('NONE');
    await search.getByRole('button', { name: 'Apply filters' }).click();
    await deviceTable.getByText('No devices match.').waitFor();
    await page.getByRole('link', { name: 'Devices & certificates' }).click();
    await eventually(() => deviceTable.locator('tbody tr').count()).toBe(5);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS, 'console-fleet-1366x768.png') });

    // Phone width: nothing wider than the screen but the tables' own scroll areas.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('heading', { name: 'Expiring certificates' }).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    // The device list is stacked rows on a phone: every row's action is on the screen, no sideways scroll.
    const manageOnPhone = page.getByRole('button', { name: 'Manage device SENSOR-365', exact: true });
    await manageOnPhone.scrollIntoViewIfNeeded();
    const box = (await manageOnPhone.boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(390);
    expect(await seriousViolations(page)).toEqual([]);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS, 'console-fleet-390x844.png'), fullPage: false });
    await page.setViewportSize({ width: 1366, height: 768 });

    // A customer cannot reach the operator view: neither the page nor its API.
    await page.goto(`${base}/app/#/operator/certificates`);
    await page.getByText('The operator view needs the operator role.').waitFor();
    expect(await page.getByRole('link', { name: 'All certificates' }).count()).toBe(0);
    const denied = await page.request.get(`${base}/api/v1/operator/certificates`);
    expect(denied.status()).toBe(403);

    expect(consoleErrors, failedResponses.join('\n')).toEqual([]);
  }, scaled(180_000));

  it('shows operators every tenant with a tenant filter and the system alerts', async () => {
    await page.goto(`${base}/app/`);
    // The landing page has loaded what it shows (a request still in flight when the session ends
    // would be answered 401, logged by Chromium).
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await eventually(() => page.locator('[aria-busy="true"]').count()).toBe(0);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Access token').fill(await t.token(null, 'operator'));
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    // An operator token has no tenant: no "tenant …" in the header; the fleet overview first.
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    expect(await page.locator('.who').textContent()).not.toMatch(/tenant/);
    const tenants = page.getByRole('table', { name: /tenant/ });
    const acme = tenants.getByRole('row').filter({ hasText: 'acme' });
    await acme.waitFor();
    expect((await acme.locator('td').allTextContents()).slice(1).map(Number).every((n) => Number.isInteger(n))).toBe(true);
    expect(await acme.locator('td').nth(1).textContent()).toBe('5'); // DEVICE-001 and the four SENSOR devices
    // Each CA's own CRL: its number and age (one CA here: the configured one).
    const crls = page.getByRole('table', { name: '1 CRL, one per CA' });
    await crls.waitFor();
    const crlRow = crls.locator('tbody tr');
    expect(await crlRow.locator('td[data-label="Status"]').textContent()).toBe('active');
    expect(await crlRow.locator('td[data-label="CRL number"]').textContent()).toMatch(/^\d+$/);
    expect(await crlRow.locator('td[data-label="Published"]').textContent()).toMatch(/^\d+ (seconds?|minutes?|hours?) ago$/);
    expect(await page.getByRole('table', { name: /expiring in each of the next 13 weeks/ }).locator('tbody tr').count()).toBe(13);
    await page.getByRole('table', { name: /The latest \d+ revocation/ }).getByRole('cell', { name: 'keyCompromise' }).first().waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'console-overview-1366x768.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await acme.getByRole('link', { name: 'acme', exact: true }).isVisible()).toBe(true);
    expect(await seriousViolations(page)).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'console-overview-390x844.png') });
    await page.setViewportSize({ width: 1366, height: 768 });
    // A tenant's link opens its certificates; the tenant picker offers the tenants the API knows.
    await acme.getByRole('link', { name: 'acme', exact: true }).click();
    await page.getByRole('heading', { name: 'Certificates of every tenant' }).waitFor();
    expect(new URL(page.url()).hash).toBe('#/operator/certificates?tenant_id=acme');
    await page.getByRole('cell', { name: 'acme', exact: true }).first().waitFor();
    const picker = page.getByLabel('Tenant');
    await eventually(() => picker.locator('option').allTextContents()).toEqual(['Every tenant', 'acme']);
    expect(await picker.inputValue()).toBe('acme');
    expect(await seriousViolations(page)).toEqual([]);

    // Every tenant's devices (GET /api/v1/operator/devices): the tenant fleet page's search with a
    // tenant picker; the filters and the page (its cursors) are the URL, a reload shows the same page.
    for (let i = 0; i < 30; i++) expect((await t.call('bulk', 'POST', '/api/v1/customer/devices', { device_id: `BULK-${String(i).padStart(2, '0')}`, site_id: 'warehouse' })).status).toBe(201);
    await page.getByRole('link', { name: 'All devices' }).click();
    await page.getByRole('heading', { name: 'Devices of every tenant', level: 1 }).waitFor();
    const everyDevice = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Next expiry' }) });
    await eventually(() => everyDevice.locator('caption').textContent()).toBe('35 devices');
    const deviceSearch = page.getByRole('search', { name: 'Search devices' });
    await eventually(() => deviceSearch.getByLabel('Tenant').locator('option').allTextContents()).toEqual(['Every tenant', 'acme', 'bulk']);
    await deviceSearch.getByLabel('Tenant').selectOption('bulk');
    await deviceSearch.getByLabel('Site').fill('warehouse');
    await deviceSearch.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => new URL(page.url()).hash).toBe('#/operator/devices?tenant_id=bulk&site_id=warehouse');
    const bulkRows = () => everyDevice.locator('td[data-label="Device"]').allTextContents();
    await eventually(() => everyDevice.locator('caption').textContent()).toBe('30 devices');
    await eventually(async () => (await bulkRows()).slice(0, 2)).toEqual(['BULK-00', 'BULK-01']);
    expect((await bulkRows()).length).toBe(25);
    expect(await everyDevice.locator('td[data-label="Tenant"]').first().textContent()).toBe('bulk');
    const devicePages = page.getByRole('navigation', { name: 'Device pages' });
    await devicePages.getByRole('button', { name: 'Next' }).click();
    await eventually(bulkRows).toEqual(['BULK-25', 'BULK-26', 'BULK-27', 'BULK-28', 'BULK-29']);
    expect(new URL(page.url()).hash).toMatch(/^#\/operator\/devices\?tenant_id=bulk&site_id=warehouse&cursor=[^&]+$/);
    await page.reload(); // the same page of the same search
    await eventually(bulkRows).toEqual(['BULK-25', 'BULK-26', 'BULK-27', 'BULK-28', 'BULK-29']);
    expect(await devicePages.textContent()).toContain('Page 2');
    expect(await deviceSearch.getByLabel('Tenant').inputValue()).toBe('bulk');
    expect(await deviceSearch.getByLabel('Site').inputValue()).toBe('warehouse');
    await devicePages.getByRole('button', { name: 'Previous' }).click();
    await eventually(async () => (await bulkRows()).length).toBe(25);
    expect(new URL(page.url()).hash).toBe('#/operator/devices?tenant_id=bulk&site_id=warehouse');
    // A device's certificates: the operator's certificate page, filtered to it.
    await deviceSearch.getByLabel('Tenant').selectOption('acme');
    await deviceSearch.getByLabel('Site').fill('');
    await deviceSearch.getByRole('combobox', { name: /^Certificate/ }).selectOption('ACTIVE');
    await deviceSearch.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(bulkRows).toEqual(['SENSOR-20', 'SENSOR-365', 'SENSOR-60', 'SENSOR-7']);
    expect(await seriousViolations(page)).toEqual([]);
    await page.getByRole('button', { name: 'Certificates of acme/SENSOR-7' }).click();
    await page.getByRole('heading', { name: 'Certificates of every tenant' }).waitFor();
    expect(new URL(page.url()).hash).toBe('#/operator/certificates?tenant_id=acme&device_id=SENSOR-7');
    await eventually(() => page.getByRole('table', { name: /^\d+ certificates?$/ }).locator('td:nth-child(3)').allTextContents()).toEqual(['SENSOR-7']);
    await page.getByRole('link', { name: 'All alerts' }).click();
    await page.getByRole('heading', { name: 'Alerts of every tenant' }).waitFor();
    // The unfiltered list has loaded before the system alert exists (else it could show it, and the
    // filtered rows below would be read from the unfiltered list).
    const alertsTable = page.locator('table', { has: page.locator('caption', { hasText: /^\d+ alerts?$/ }) });
    await eventually(() => alertsTable.getAttribute('aria-busy')).toBe('false');
    expect(await page.getByRole('row').filter({ hasText: 'CRL_STALE' }).count()).toBe(0);
    // A system alert (the worker's CRL freshness check, with publication failing): operators filter for it.
    await createCheckCrlFreshness({
      storage: t.service.deps.storage,
      clock: t.clock,
      health: { nextUpdate: async () => new Date(t.clock.now().getTime() + 7 * 86_400_000), consecutiveFailures: async () => 3 },
      marginMs: 86_400_000,
      failureThreshold: 3,
    })();
    // The tenant filter is a picker fed by the API, with the system tenant of the system alerts.
    const alertTenant = page.getByRole('search', { name: 'Filter alerts' }).getByLabel('Tenant');
    await eventually(() => alertTenant.locator('option').allTextContents()).toEqual(['Every tenant', 'System (__system__)', 'acme', 'bulk']);
    await alertTenant.selectOption('__system__');
    await page.getByLabel('Type').selectOption('CRL_STALE');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    const stale = page.getByRole('row').filter({ hasText: 'CRL_STALE' });
    await stale.waitFor();
    await eventually(() => alertsTable.getAttribute('aria-busy')).toBe('false');
    expect(await stale.textContent()).toContain('__system__');
    expect(await page.getByRole('row').filter({ hasText: 'CERT_EXPIRING' }).count()).toBe(0);
    expect(new URL(page.url()).hash).toBe('#/operator/alerts?tenant_id=__system__&type=CRL_STALE');
    await page.reload(); // the same filtered list, the same picker
    await stale.waitFor();
    await eventually(() => alertsTable.getAttribute('aria-busy')).toBe('false');
    expect(await page.getByRole('row').filter({ hasText: 'CERT_EXPIRING' }).count()).toBe(0);
    expect(await alertTenant.inputValue()).toBe('__system__');
    await page.getByRole('link', { name: 'All audit' }).click();
    const operatorAudit = page.getByRole('table', { name: 'Audit events, newest first' });
    await operatorAudit.getByRole('cell', { name: 'acme', exact: true }).first().waitFor();
    const auditTenant = page.getByRole('search', { name: 'Filter the audit log' }).getByLabel('Tenant');
    await eventually(() => auditTenant.locator('option').allTextContents()).toEqual(['Every tenant', 'System (__system__)', 'acme', 'bulk']);
    await auditTenant.selectOption('bulk');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(() => operatorAudit.locator('td[data-label="Tenant"]').allTextContents()).toEqual(Array(30).fill('bulk'));
    expect(new URL(page.url()).hash).toBe('#/operator/audit?tenant_id=bulk');
    await page.reload();
    await eventually(() => operatorAudit.locator('td[data-label="Tenant"]').allTextContents()).toEqual(Array(30).fill('bulk'));
    expect(await auditTenant.inputValue()).toBe('bulk');
    await auditTenant.selectOption('');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await operatorAudit.getByRole('cell', { name: 'acme', exact: true }).first().waitFor();
    expect(await seriousViolations(page)).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'console-operator-1366x768.png') });
    expect(consoleErrors, failedResponses.join('\n')).toEqual([]);
  });

  it('every page at phone (390x844) and desktop (1366x768) width: no sideways scroll, every table action visible and on the screen', async () => {
    // A broker node that reported (as its agent would): the fleet overview lists it with its lag.
    const reported = t.clock.now();
    await database.db.asOperator((tx) =>
      tx.query(
        `INSERT INTO broker_nodes (node, kind, crl_number, applied_at, reported_at, checked_at, check_result, created_at)
         VALUES ('mqtt-edge-1', 'mosquitto', 0, $1, $1, $1, 'passed', $1) ON CONFLICT (node) DO NOTHING`,
        [reported],
      ),
    );
    const sizes = [
      { width: 390, height: 844 },
      { width: 1366, height: 768 },
    ];
    const shots = process.env.CERTFLEET_UPDATE_SCREENSHOTS === '1' ? join(process.cwd(), 'docs', 'screenshots') : null;
    if (shots) mkdirSync(shots, { recursive: true });
    /** Visits the route at both sizes; the number of table buttons it checked. */
    const visit = async (route: string, heading: string, name: string) => {
      let checked = 0;
      for (const size of sizes) {
        const label = `${route} at ${size.width}x${size.height}`;
        await page.setViewportSize(size);
        await page.goto(`${base}/app/#${route}`);
        await page.getByRole('heading', { name: heading, level: 1, exact: true }).waitFor();
        await eventually(() => page.locator('[aria-busy="true"]').count()).toBe(0);
        // the page itself never scrolls sideways (a wide table scrolls inside its own area)
        expect(await page.evaluate(() => document.documentElement.scrollWidth), label).toBeLessThanOrEqual(size.width);
        // every button of every table (not those of a closed confirmation dialog): visible, and
        // entirely on the screen once scrolled to
        const buttons = page.locator('table button:not(dialog *)');
        const count = await buttons.count();
        for (let i = 0; i < count; i++) {
          const button = buttons.nth(i);
          await button.scrollIntoViewIfNeeded();
          const what = `${label}: table button ${i} "${await button.textContent()}"`;
          expect(await button.isVisible(), what).toBe(true);
          const box = (await button.boundingBox())!;
          // (scrolled into view to a fraction of a pixel)
          expect(box.x, what).toBeGreaterThanOrEqual(-1);
          expect(box.x + box.width, what).toBeLessThanOrEqual(size.width + 1);
          expect(box.y, what).toBeGreaterThanOrEqual(-1);
          expect(box.y + box.height, what).toBeLessThanOrEqual(size.height + 1);
          checked++;
        }
        expect(await seriousViolations(page), label).toEqual([]);
        await page.evaluate(() => window.scrollTo(0, 0));
        const file = `console-${name}-${size.width}x${size.height}.png`;
        await page.screenshot({ path: join(ARTIFACTS, file) });
        if (shots) await page.screenshot({ path: join(shots, file) });
      }
      return checked;
    };
    const checked: Record<string, number> = {};
    await page.setViewportSize({ width: 1366, height: 768 });
    await page.goto(`${base}/app/`);
    // The landing page has loaded what it shows (a request still in flight when the session ends
    // would be answered 401, logged by Chromium).
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await eventually(() => page.locator('[aria-busy="true"]').count()).toBe(0);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Access token').fill(await t.token('acme', 'customer'));
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    await page.getByRole('heading', { name: 'Devices & certificates' }).waitFor();
    const customerPages: [string, string, string][] = [
      ['/fleet', 'Devices & certificates', 'fleet'],
      ['/fleet?device=SENSOR-20', 'Devices & certificates', 'device'],
      ['/fleet?certificate_status=ACTIVE&sort=expiry', 'Devices & certificates', 'fleet-search'],
      ['/alerts', 'Alerts', 'alerts'],
      ['/crl', 'Certificate revocation list', 'crl'],
      ['/webhooks', 'Webhooks', 'webhooks'],
      ['/audit', 'Audit log', 'audit'],
    ];
    for (const [route, heading, name] of customerPages) checked[name] = await visit(route, heading, name);
    await page.setViewportSize({ width: 1366, height: 768 });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Access token').fill(await t.token(null, 'operator'));
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    await page.getByRole('heading', { name: 'Fleet overview' }).waitFor();
    // the overview lists the broker node with its lag
    const node = page.getByRole('table', { name: /nodes?; latest CRL number/ }).getByRole('row').filter({ hasText: 'mqtt-edge-1' });
    await node.waitFor();
    expect(await node.locator('td[data-label="Lag"]').textContent()).toMatch(/^(none|\d+ s)$/);
    const operatorPages: [string, string, string][] = [
      ['/operator/overview', 'Fleet overview', 'overview'],
      ['/operator/devices', 'Devices of every tenant', 'operator-devices'],
      ['/operator/certificates', 'Certificates of every tenant', 'operator-certificates'],
      ['/operator/alerts', 'Alerts of every tenant', 'operator-alerts'],
      ['/operator/audit', 'Audit log of every tenant', 'operator-audit'],
    ];
    for (const [route, heading, name] of operatorPages) checked[name] = await visit(route, heading, name);
    // the device list's Manage buttons and the open device's certificate actions were among them
    expect(checked.fleet).toBeGreaterThan(0);
    expect(checked.device).toBeGreaterThanOrEqual(checked.fleet);
    await page.setViewportSize({ width: 1366, height: 768 });
    expect(consoleErrors, failedResponses.join('\n')).toEqual([]);
  }, scaled(240_000));

  it('shows API failures as readable messages where they happened, never a blank page', async () => {
    // Still signed in as the operator: one request cannot reach the server, another answers 500 problem+json.
    await page.route('**/api/v1/operator/expiry-summary*', (route) => route.abort('connectionrefused'));
    await page.route('**/api/v1/operator/crl/status', (route) =>
      route.fulfill({ status: 500, contentType: 'application/problem+json', body: JSON.stringify({ status: 500, code: 'INTERNAL', detail: 'internal error; see the server log' }) }),
    );
    try {
      await page.goto(`${base}/app/#/operator/certificates`);
      await page.getByRole('alert').filter({ hasText: 'could not reach certfleet' }).waitFor();
      await page.getByRole('alert').filter({ hasText: 'internal error; see the server log (INTERNAL)' }).waitFor();
      // The rest of the page works.
      await page.getByRole('table', { name: /certificates/ }).waitFor();
      expect(await page.locator('body').textContent()).not.toMatch(/at \S+ \(|TypeError|stack/);
      await expectLoggedHttpError(500);
      const refused = (m: string) => m.includes('net::ERR_CONNECTION_REFUSED');
      await eventually(() => consoleErrors.some(refused)).toBe(true);
      consoleErrors.splice(consoleErrors.findIndex(refused), 1);
      expect(consoleErrors, failedResponses.join('\n')).toEqual([]);
    } finally {
      await page.unrouteAll();
    }
  });

  it('signs in with OIDC: authorization code flow with PKCE against the issuer, then the cookie session', async () => {
    const idp = await startOidcProvider({ clientId: 'certfleet-console', audience: 'certfleet', claims: { tenant_id: 'acme', realm_access: { roles: ['customer'] } } });
    // A second service (a replica) on the same database, configured for OIDC.
    const oidc = await startTestService(database, {
      env: { OIDC_ISSUER: idp.issuer, OIDC_JWKS_URL: idp.jwksUrl, OIDC_AUDIENCE: 'certfleet', OIDC_CLIENT_ID: 'certfleet-console' },
    });
    try {
      const oidcBase = await oidc.service.app.listen({ host: '127.0.0.1', port: 0 });
      allowedOrigins.add(oidcBase);
      allowedOrigins.add(idp.issuer);
      // Cookies do not tell ports apart: leave no session of the other service behind.
      await context.clearCookies();
      await page.goto(`${oidcBase}/app/`);
      await page.getByRole('button', { name: `Sign in with ${new URL(idp.issuer).host}` }).click();
      await page.getByRole('heading', { name: 'Devices & certificates' }).waitFor();
      expect(page.url()).toBe(`${oidcBase}/app/`);
      expect(idp.exchanges).toEqual([{ ok: true, reason: undefined }]);
      await page.getByText('oidc-user-1').waitFor();
      expect(await page.evaluate(() => JSON.stringify({ ...sessionStorage }))).toBe('{}');
      // The session is the cookie: an unsafe request from the page carries the CSRF token.
      await page.getByText('Register a device').click();
      await page.getByLabel('Device ID').first().fill('OIDC-DEVICE');
      await page.getByRole('button', { name: 'Register device', exact: true }).click();
      await confirmDialog(/Yes, register device/);
      await page.getByRole('status').filter({ hasText: 'Device OIDC-DEVICE registered.' }).waitFor();
      expect(await seriousViolations(page)).toEqual([]);
      expect(consoleErrors, failedResponses.join('\n')).toEqual([]);
    } finally {
      await oidc.close();
      await idp.close();
    }
  }, scaled(120_000));

  // From test/docs-csp.test.ts (issue 23: one Chromium for both; the headers are test/openapi.test.ts's).
  it('/docs: Swagger UI renders the operations under its Content-Security-Policy, with no CSP violation or script error', async () => {
    const docsPage = await context.newPage(); // the console's page keeps its own listeners
    const foreign: string[] = [];
    // Nothing but certfleet itself may be contacted (no CDN, no validator badge): this page's route comes before the context's.
    await docsPage.route(/.*/, (route) => {
      if (route.request().url().startsWith(`${base}/`)) return route.continue();
      foreign.push(route.request().url());
      return route.abort();
    });
    const problems: string[] = [];
    docsPage.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    docsPage.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    await docsPage.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
    });
    try {
      const response = await docsPage.goto(`${base}/docs/`);
      expect(response?.headers()['content-security-policy']).toMatch(/script-src 'self'/);
      // Rendered from /docs/json: the title and an operation of the API.
      await docsPage.locator('.swagger-ui .info .title').filter({ hasText: 'certfleet' }).waitFor();
      await docsPage.locator('.opblock-summary-path', { hasText: '/api/v1/customer/devices' }).first().waitFor();
      // Expanding an operation runs more of Swagger UI's scripts and styles.
      await docsPage.locator('.opblock-summary', { hasText: '/api/v1/customer/devices' }).first().click();
      await docsPage.locator('.opblock-body').first().waitFor();
      expect(await docsPage.evaluate(() => getComputedStyle(document.querySelector('.swagger-ui .opblock')!).borderStyle)).toBe('solid'); // the stylesheet applied
      expect(problems).toEqual([]);
      expect(foreign).toEqual([]);
    } finally {
      await docsPage.close();
    }
  });
});
