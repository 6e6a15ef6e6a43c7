/**
 * The console's Device CA pages (issue 19 item 3, issue 25 items 2 and 4) in Chromium: the CA list
 * and one CA's page with its migration progress, each with its own URL (a reload keeps it); stage,
 * import, activate, retire (the 409 shown in place, then a forced retirement that needs a reason),
 * revoke (cACompromise), each behind the confirmation dialog with an explicit keyboard path; the
 * fleet overview's CAs with their expiry next to the broker nodes; the device list's issuing-CA
 * filter in the URL; both screen sizes; axe. Behaviour, not pixels.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeviceCa } from '../src/pki/device-ca.ts';
import { eventually, HAS_CHROMIUM, CHROMIUM, launchConsoleBrowser, seriousViolations, type ConsoleBrowser } from './support/console-browser.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { scaled } from './support/timeouts.ts';
import { ensureWebBuilt } from './support/web-build.ts';

const ARTIFACTS = join(process.cwd(), 'test-artifacts');

describe.runIf(HAS_CHROMIUM)(`console: certificate authorities in Chromium${HAS_CHROMIUM ? '' : ` (skipped: no ${CHROMIUM})`}`, () => {
  let database: TestDatabase;
  let t: TestService;
  let b: ConsoleBrowser;
  let page: Page;
  let base: string;
  const op = (method: string, url: string, body?: unknown) => t.call(null, method, `/api/v1/operator${url}`, body, 'operator');
  const issue = async (tenant: string, device: string) => {
    const res = await t.call(tenant, 'POST', `/api/v1/customer/devices/${device}/certificates/generate`, { key_type: 'ec-p256' });
    expect(res.status, res.body).toBe(201);
  };
  const casNow = async () => (await op('GET', '/cas')).json.cas as { id: string; status: string; subject: string; tenant_id: string | null; kind: string; parent_id: string | null }[];

  const signIn = async (tenant: string | null, role: 'customer' | 'operator', heading: string) => {
    await b.context.clearCookies();
    await page.goto(`${base}/app/`);
    await page.getByLabel('Access token').fill(await t.token(tenant, role));
    await page.getByRole('button', { name: 'Sign in with the token' }).click();
    await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
  };
  /** The page has loaded what it shows: no element is busy. */
  const settled = () => eventually(() => page.locator('[aria-busy="true"]').count()).toBe(0);
  const focusedText = () => page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
  /** The confirmation dialog: opened on Cancel, Tab and Shift+Tab stay inside it; then confirmed with the keyboard. */
  const confirmByKeyboard = async (yes: RegExp) => {
    const dialog = page.getByRole('dialog');
    await eventually(() => dialog.isVisible()).toBe(true);
    await eventually(focusedText).toBe('Cancel');
    await page.keyboard.press('Tab');
    await eventually(focusedText).toMatch(yes);
    await page.keyboard.press('Tab');
    await eventually(focusedText).toBe('Cancel');
    await page.keyboard.press('Shift+Tab');
    await eventually(focusedText).toMatch(yes);
    await page.keyboard.press('Enter');
    await eventually(() => dialog.isVisible()).toBe(false);
  };
  const status = (text: string | RegExp) => page.getByRole('status').filter({ hasText: text });
  const alert = (text: string | RegExp) => page.getByRole('alert').filter({ hasText: text });
  const caRow = (subject: string) => page.getByRole('table', { name: /\d+ CAs?/ }).getByRole('row').filter({ hasText: subject });
  const hashOf = () => decodeURIComponent(new URL(page.url()).hash);

  beforeAll(async () => {
    ensureWebBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    database = await createTestDatabase('pg');
    t = await startTestService(database);
    base = await t.service.app.listen({ host: '127.0.0.1', port: 0 });
    b = await launchConsoleBrowser([base]);
    page = b.page;
    for (const [tenant, device] of [['acme', 'A1'], ['acme', 'A2'], ['acme', 'A3'], ['globex', 'G1']]) {
      expect((await t.call(tenant, 'POST', '/api/v1/customer/devices', { device_id: device })).status).toBe(201);
    }
    await issue('acme', 'A1');
    await issue('acme', 'A2');
    await issue('globex', 'G1');
    // A broker node that reported (as its agent would): the overview shows it next to the CAs.
    const now = t.clock.now();
    await database.db.asOperator((tx) =>
      tx.query(
        `INSERT INTO broker_nodes (node, kind, crl_number, applied_at, reported_at, checked_at, check_result, created_at)
         VALUES ('mqtt-edge-1', 'mosquitto', 0, $1, $1, $1, 'passed', $1)`,
        [now],
      ),
    );
  });

  afterAll(async () => {
    await b?.close();
    await t?.close();
    await database?.close();
  });

  it('overview: the CAs with status and expiry next to the broker nodes', async () => {
    const [configured] = await casNow();
    await signIn(null, 'operator', 'Fleet overview');
    const cas = page.getByRole('table', { name: /1 CA, with their expiry/ });
    const row = cas.getByRole('row').filter({ hasText: configured!.subject });
    await row.waitFor();
    expect(await row.locator('td[data-label="Status"]').textContent()).toBe('active');
    expect(await row.locator('td[data-label="Scope"]').textContent()).toBe('global');
    expect(await row.locator('td[data-label="Not after"]').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d UTC \(in \d+ (years|days)\)$/);
    expect(await row.locator('td[data-label="Active certificates"]').textContent()).toBe('3');
    await page.getByRole('table', { name: /1 node; latest CRL number/ }).getByRole('row').filter({ hasText: 'mqtt-edge-1' }).waitFor();
    // A CA's name opens its page.
    await row.getByRole('link', { name: configured!.subject }).click();
    await page.getByRole('heading', { name: `CA ${configured!.subject}`, level: 1 }).waitFor();
    expect(hashOf()).toBe(`#/operator/cas/${configured!.id}`);
    expect(await seriousViolations(page)).toEqual([]);
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);
  });

  it('rollover in the console: stage, activate, progress per tenant, retire refused in place, forced retirement with a reason; deep links survive a reload', async () => {
    const [old] = await casNow();
    await page.goto(`${base}/app/#/operator/overview`);
    await page.getByRole('link', { name: 'Certificate authorities', exact: true }).click();
    await page.getByRole('heading', { name: 'Certificate authorities', level: 1 }).waitFor();
    expect(hashOf()).toBe('#/operator/cas');
    await caRow(old!.subject).waitFor();
    // The scope picker offers the tenants the API knows.
    await eventually(() => page.getByLabel('Scope').first().locator('option').allTextContents()).toEqual(['Global (every tenant without its own CA)', 'Tenant acme', 'Tenant globex']);

    // Stage: the confirmation dialog's keyboard path is explicit.
    await page.getByLabel('Common name (optional)').fill('Console Device CA 2');
    await page.getByRole('button', { name: 'Stage CA', exact: true }).click();
    expect(await page.getByRole('dialog').textContent()).toContain('global');
    await confirmByKeyboard(/^Yes, stage ca/);
    await status(/CA ca_[0-9a-f]+ staged with a new key/).waitFor();
    const next = (await casNow()).find((c) => c.subject.includes('Console Device CA 2'))!;
    expect(next.status).toBe('staged');
    const nextRow = caRow('Console Device CA 2');
    await nextRow.waitFor();
    expect(await nextRow.locator('td[data-label="Status"]').textContent()).toBe('staged');
    expect(await nextRow.locator('td[data-label="ID"]').textContent()).toBe(next.id);

    // Its page: a URL of its own; the heading takes the focus; a reload shows the same CA.
    await page.getByRole('link', { name: 'Open CA' }).click();
    const nextHeading = page.getByRole('heading', { name: /^CA .*Console Device CA 2/, level: 1 });
    await nextHeading.waitFor();
    expect(hashOf()).toBe(`#/operator/cas/${next.id}`);
    await eventually(() => page.evaluate(() => document.activeElement?.tagName)).toBe('H1');
    await page.reload();
    await nextHeading.waitFor();
    await settled();
    expect(await page.locator('.ca-facts').textContent()).toContain('staged');
    expect(await page.getByRole('link', { name: 'Certificate authorities', exact: true }).getAttribute('aria-current')).toBe('page');
    // A staged CA cannot be revoked by mistake from a key press: every action asks first; Escape cancels.
    await page.getByRole('button', { name: `Activate CA ${next.id}` }).click();
    await eventually(() => page.getByRole('dialog').isVisible()).toBe(true);
    await page.keyboard.press('Escape');
    await eventually(() => page.getByRole('dialog').isVisible()).toBe(false);
    await eventually(() => page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe(`Activate CA ${next.id}`);
    expect((await casNow()).find((c) => c.id === next.id)!.status).toBe('staged');

    await page.getByRole('button', { name: `Activate CA ${next.id}` }).click();
    await confirmByKeyboard(/^Yes, activate/);
    await status(`CA ${next.id} is active; ${old!.id} is retiring.`).waitFor();
    await eventually(() => page.locator('.ca-facts .badge').textContent()).toBe('active');
    expect(await page.getByRole('button', { name: `Activate CA ${next.id}` }).count()).toBe(0);
    await issue('acme', 'A3'); // under the new CA

    // The overview shows each CA's own CRL: the new active CA's and the retiring one's, each with its number.
    await page.goto(`${base}/app/#/operator/overview`);
    const crls = page.getByRole('table', { name: '2 CRLs, one per CA' });
    await crls.waitFor();
    const crlOf = (subject: string) => crls.getByRole('row').filter({ hasText: subject });
    expect(await crlOf('Console Device CA 2').locator('td[data-label="Status"]').textContent()).toBe('active');
    expect(await crlOf(old!.subject).locator('td[data-label="Status"]').textContent()).toBe('retiring');
    for (const subject of ['Console Device CA 2', old!.subject]) {
      await eventually(async () => {
        await page.reload();
        await crls.waitFor();
        return crlOf(subject).locator('td[data-label="CRL number"]').textContent();
      }).toMatch(/^\d+$/);
    }
    expect(await crlOf('Console Device CA 2').getByRole('link').getAttribute('href')).toBe(`#/operator/cas/${next.id}`);

    // The old CA: migration progress per tenant, each with the certificates still under it.
    await page.goto(`${base}/app/#/operator/cas/${old!.id}`);
    await page.getByRole('heading', { name: `CA ${old!.subject}`, level: 1 }).waitFor();
    const progress = page.getByRole('table', { name: /3 unexpired, unrevoked certificates under this CA, by tenant/ });
    await progress.waitFor();
    const rows = async () => (await progress.locator('tbody tr').allInnerTexts()).map((r) => r.split('\t').slice(0, 2).join(' '));
    expect(await rows()).toEqual(['acme 2', 'globex 1']);
    await progress.getByRole('link', { name: 'Certificates of acme under this CA' }).click();
    await page.getByRole('heading', { name: 'Certificates of every tenant' }).waitFor();
    expect(hashOf()).toBe(`#/operator/certificates?tenant_id=acme&ca_id=${old!.id}&status=ACTIVE`);
    const certs = page.getByRole('table', { name: /^\d+ certificates$/ });
    await eventually(() => certs.locator('caption').textContent()).toBe('2 certificates');
    expect(await page.getByLabel('Issuing CA').inputValue()).toBe(old!.id);
    // Each certificate names its issuing CA (ca_id), a link to the CA's page.
    expect(await certs.locator('td.issuing-ca').allTextContents()).toEqual([old!.subject, old!.subject]);
    expect(await certs.locator('td.issuing-ca a').first().getAttribute('href')).toBe(`#/operator/cas/${old!.id}`);
    // The filters are the URL: applying others is a new URL (a reload keeps it), Back returns to these.
    await page.getByLabel('Status').selectOption('EXPIRED');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await eventually(hashOf).toBe(`#/operator/certificates?tenant_id=acme&status=EXPIRED&ca_id=${old!.id}`);
    await eventually(() => certs.locator('caption').textContent()).toBe('0 certificates');
    await page.reload();
    await eventually(() => certs.locator('caption').textContent()).toBe('0 certificates');
    expect(await page.getByLabel('Status').inputValue()).toBe('EXPIRED');
    await page.goBack();
    await eventually(() => certs.locator('caption').textContent()).toBe('2 certificates');
    await page.goBack();
    await page.getByRole('heading', { name: `CA ${old!.subject}`, level: 1 }).waitFor();
    await settled();

    // Retire: refused (409) while certificates remain, the API's message in place; the forced form appears.
    expect(await page.getByRole('button', { name: 'Force retirement' }).count()).toBe(0);
    await page.getByRole('button', { name: `Retire CA ${old!.id}` }).click();
    await confirmByKeyboard(/^Yes, retire/);
    await alert(/still has 3 unexpired, unrevoked certificate.*\(CA_HAS_ACTIVE_CERTIFICATES\)/).waitFor();
    await b.expectLoggedHttpError(409);
    expect((await casNow()).find((c) => c.id === old!.id)!.status).toBe('retiring');
    const force = page.getByRole('button', { name: 'Force retirement' });
    await force.waitFor();
    // No reason: the form does not submit (no dialog), the field says why.
    await force.click();
    expect(await page.getByLabel('Reason (required, audited)').evaluate((el) => (el as HTMLInputElement).validity.valueMissing)).toBe(true);
    expect(await page.getByRole('dialog').isVisible()).toBe(false);
    await page.getByLabel('Reason (required, audited)').fill('devices decommissioned, never renewed');
    await force.click();
    await confirmByKeyboard(/^Yes, force retirement/);
    await status(`CA ${old!.id} is retired (forced: devices decommissioned, never renewed).`).waitFor();
    await eventually(() => page.locator('.ca-facts .badge').textContent()).toBe('retired');
    // The latest outcome replaces the refusal; a retired CA offers no retirement any more.
    expect(await page.locator('.ca-actions').getByRole('alert').count()).toBe(0);
    expect(await page.getByRole('button', { name: `Retire CA ${old!.id}` }).count()).toBe(0);
    expect(await page.locator('.ca-facts').textContent()).toContain('devices decommissioned, never renewed');
    expect(await seriousViolations(page)).toEqual([]);
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);
  }, scaled(180_000));

  it('import (bring your own CA), a bad import refused in place with nothing stored, revoke with cACompromise; unknown fields shown', async () => {
    await page.goto(`${base}/app/#/operator/cas`);
    await page.getByRole('heading', { name: 'Certificate authorities', level: 1 }).waitFor();
    await settled();
    const byo = await createDeviceCa({ now: new Date(), commonName: 'BYO Console CA' });
    const other = await createDeviceCa({ now: new Date(), commonName: 'Other Console CA' });
    const before = (await casNow()).length;

    // The key of another CA: the API's 422 next to the forms, nothing stored.
    await page.getByLabel('CA certificate (PEM)').fill(byo.certPem);
    await page.getByLabel('CA private key (PEM)').fill(other.keyPem);
    await page.getByRole('button', { name: 'Import CA', exact: true }).click();
    await confirmByKeyboard(/^Yes, import ca/);
    await alert(/CA_KEY_MISMATCH/).waitFor();
    await b.expectLoggedHttpError(422);
    expect((await casNow()).length).toBe(before);

    await page.getByLabel('CA private key (PEM)').fill(byo.keyPem);
    await page.getByLabel('Scope').nth(1).selectOption('globex');
    await page.getByRole('button', { name: 'Import CA', exact: true }).click();
    expect(await page.getByRole('dialog').textContent()).toContain('tenant globex');
    await confirmByKeyboard(/^Yes, import ca/);
    await status(/CA ca_[0-9a-f]+ imported/).waitFor();
    // The key is gone from the page once certfleet has it.
    expect(await page.getByLabel('CA private key (PEM)').inputValue()).toBe('');
    const imported = (await casNow()).find((c) => c.subject.includes('BYO Console CA'))!;
    expect(imported).toMatchObject({ status: 'staged', tenant_id: 'globex' });
    const row = caRow('BYO Console CA');
    await row.waitFor();
    expect(await row.locator('td[data-label="Scope"]').textContent()).toBe('tenant globex');

    // A newer server's fields are shown, not dropped or fatal.
    await page.route(`**/api/v1/operator/cas/${imported.id}`, async (route) => {
      const response = await route.fetch();
      const json = await response.json();
      await route.fulfill({ response, json: { ...json, ca: { ...json.ca, name_constraints: { permitted: ['globex/'] } } } });
    });
    try {
      await row.getByRole('link', { name: /BYO Console CA/ }).click();
      await page.getByRole('heading', { name: /^CA .*BYO Console CA/, level: 1 }).waitFor();
      const facts = page.locator('.ca-facts');
      await facts.locator('dt', { hasText: 'Name constraints' }).waitFor();
      await facts.getByText('{"permitted":["globex/"]}').waitFor();
      expect(await facts.locator('.ca-kind').textContent()).toBe('issuing, self-signed');
    } finally {
      await page.unrouteAll();
    }

    // Revoke: the reason is cACompromise, said in the dialog; the CA is revoked at once.
    await page.getByRole('button', { name: `Revoke CA ${imported.id}` }).click();
    expect(await page.getByRole('dialog').textContent()).toContain('cACompromise');
    await confirmByKeyboard(/^Yes, revoke/);
    await status(`CA ${imported.id} is revoked (cACompromise; it was staged).`).waitFor();
    await eventually(() => page.locator('.ca-facts .badge').textContent()).toBe('revoked');
    expect((await casNow()).find((c) => c.id === imported.id)!.status).toBe('revoked');
    expect(await page.locator('.ca-actions button:not(dialog *)').count()).toBe(0);
    expect(await seriousViolations(page)).toEqual([]);
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);
  }, scaled(120_000));

  it("stage form: a root CA, then an intermediate signed by it (the API's kind and parent_id, the CLI's --root and --parent)", async () => {
    await page.goto(`${base}/app/#/operator/cas`);
    await page.getByRole('heading', { name: 'Certificate authorities', level: 1 }).waitFor();
    await settled();
    // No root yet: an issuing CA can only sign itself.
    await eventually(() => page.getByLabel('Signed by').locator('option').allTextContents()).toEqual(['Itself (self-signed)']);
    await page.getByLabel('Kind').selectOption('root');
    expect(await page.getByLabel('Signed by').count()).toBe(0);
    await page.getByLabel('Common name (optional)').fill('Console Root CA');
    await page.getByRole('button', { name: 'Stage CA', exact: true }).click();
    expect(await page.getByRole('dialog').textContent()).toContain('create a root CA for the global scope');
    await confirmByKeyboard(/^Yes, stage ca/);
    await status(/Root CA ca_[0-9a-f]+ created with a new key \(active: signs intermediates and its CRL, never a device certificate\)/).waitFor();
    const root = (await casNow()).find((c) => c.subject.includes('Console Root CA'))!;
    expect(root).toMatchObject({ kind: 'root', status: 'active', parent_id: null, tenant_id: null });
    const rootRow = caRow('Console Root CA');
    await rootRow.waitFor();
    expect(await rootRow.locator('td[data-label="CA"]').textContent()).toContain('(root)');

    // An intermediate under it: the picker offers the active roots that may sign for the scope.
    await page.getByLabel('Kind').selectOption('issuing');
    await eventually(() => page.getByLabel('Signed by').locator('option').allTextContents()).toEqual(['Itself (self-signed)', `Root ${root.subject}`]);
    await page.getByLabel('Signed by').selectOption(root.id);
    await page.getByLabel('Common name (optional)').fill('Console Intermediate CA');
    await page.getByRole('button', { name: 'Stage CA', exact: true }).click();
    expect(await page.getByRole('dialog').textContent()).toContain(`stage an intermediate CA signed by the root ${root.subject} for the global scope`);
    await confirmByKeyboard(/^Yes, stage ca/);
    await status(`signed by root ${root.id} (staged: published, not yet signing).`).waitFor();
    const intermediate = (await casNow()).find((c) => c.subject.includes('Console Intermediate CA'))!;
    expect(intermediate).toMatchObject({ kind: 'issuing', status: 'staged', parent_id: root.id, tenant_id: null });
    expect(await caRow('Console Intermediate CA').locator('td[data-label="CA"]').textContent()).toContain('(intermediate)');

    // Its page names its root (a link); the root's page lists its intermediates.
    await page.getByRole('link', { name: 'Open CA' }).click();
    await page.getByRole('heading', { name: /^CA .*Console Intermediate CA/, level: 1 }).waitFor();
    const kind = page.locator('.ca-kind');
    await eventually(() => kind.textContent()).toBe(`intermediate, signed by the root ${root.subject}`);
    await kind.getByRole('link').click();
    await page.getByRole('heading', { name: `CA ${root.subject}`, level: 1 }).waitFor();
    expect(hashOf()).toBe(`#/operator/cas/${root.id}`);
    await eventually(() => page.locator('.ca-facts').textContent()).toContain(`${intermediate.subject} (staged)`);
    expect(await page.locator('.ca-kind').textContent()).toMatch(/^root/);
    // A root is never activated for issuance (it is in service already).
    expect(await page.getByRole('button', { name: `Activate CA ${root.id}` }).count()).toBe(0);
    expect(await seriousViolations(page)).toEqual([]);
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);
  }, scaled(120_000));

  it('the CA pages at phone (390x844) and desktop (1366x768) width: no sideways scroll, every action on the screen, axe', async () => {
    const cas = await casNow();
    const active = cas.find((c) => c.status === 'active' && c.tenant_id === null && c.kind !== 'root')!;
    const shots = process.env.CERTFLEET_UPDATE_SCREENSHOTS === '1' ? join(process.cwd(), 'docs', 'screenshots') : null;
    if (shots) mkdirSync(shots, { recursive: true });
    const pages: [string, RegExp, string][] = [
      ['/operator/cas', /^Certificate authorities$/, 'cas'],
      [`/operator/cas/${active.id}`, /^CA /, 'ca'],
    ];
    for (const size of [
      { width: 390, height: 844 },
      { width: 1366, height: 768 },
    ]) {
      await page.setViewportSize(size);
      for (const [route, heading, name] of pages) {
        const label = `${route} at ${size.width}x${size.height}`;
        await page.goto(`${base}/app/#${route}`);
        await page.getByRole('heading', { name: heading, level: 1 }).waitFor();
        await settled();
        const wider = await page.evaluate(
          (w) => [...document.querySelectorAll('main *')].filter((e) => e.getBoundingClientRect().right > w + 1).slice(-3).map((e) => `${e.tagName}.${e.className}: ${(e.textContent ?? '').slice(0, 40)}`),
          size.width,
        );
        expect(await page.evaluate(() => document.documentElement.scrollWidth), `${label}; wider: ${wider.join(' | ')}`).toBeLessThanOrEqual(size.width);
        // Every action button of the page (not those of a closed dialog): visible, entirely on the screen once scrolled to.
        const buttons = page.locator('main button:not(dialog *)');
        const count = await buttons.count();
        expect(count, label).toBeGreaterThan(0);
        for (let i = 0; i < count; i++) {
          const button = buttons.nth(i);
          await button.scrollIntoViewIfNeeded();
          const what = `${label}: button "${await button.textContent()}"`;
          expect(await button.isVisible(), what).toBe(true);
          const box = (await button.boundingBox())!;
          expect(box.x, what).toBeGreaterThanOrEqual(-1);
          expect(box.x + box.width, what).toBeLessThanOrEqual(size.width + 1);
          expect(box.y, what).toBeGreaterThanOrEqual(-1);
          expect(box.y + box.height, what).toBeLessThanOrEqual(size.height + 1);
        }
        // Every CA link of the list is on the screen too (the table stacks on a phone).
        const links = page.locator('main table a');
        for (let i = 0; i < (await links.count()); i++) {
          const link = links.nth(i);
          await link.scrollIntoViewIfNeeded();
          const box = (await link.boundingBox())!;
          expect(box.x + box.width, `${label}: link ${i}`).toBeLessThanOrEqual(size.width + 1);
        }
        expect(await seriousViolations(page), label).toEqual([]);
        await page.evaluate(() => window.scrollTo(0, 0));
        const file = `console-${name}-${size.width}x${size.height}.png`;
        await page.screenshot({ path: join(ARTIFACTS, file) });
        if (shots) await page.screenshot({ path: join(shots, file) });
      }
    }
    await page.setViewportSize({ width: 1366, height: 768 });
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);
  }, scaled(120_000));

  it("the device list's issuing-CA filter: in the search form and the URL; a reload keeps it", async () => {
    const cas = await casNow();
    const retired = cas.find((c) => c.status === 'retired')!;
    const active = cas.find((c) => c.status === 'active' && c.tenant_id === null && c.kind !== 'root')!;
    await signIn('acme', 'customer', 'Devices & certificates');
    const devices = page.getByRole('table', { name: /devices?$/ });
    const listed = async () => (await devices.locator('td[data-label="Device"]').allTextContents()).sort();
    // A picker fed by the API (GET /customer/cas): the CAs holding the tenant's active certificates, and the
    // one signing its new ones; none of another tenant's (globex's imported CA), no root.
    const picker = page.getByRole('search', { name: 'Search devices' }).getByLabel('Issuing CA');
    await eventually(() => picker.locator('option').allTextContents()).toEqual(
      expect.arrayContaining(['Any CA', `${retired.subject} (retired, 2 active certificates)`, `${active.subject} (active, 1 active certificate)`]),
    );
    expect(await picker.locator('option').count()).toBe(3);
    await picker.selectOption(active.id);
    await page.getByRole('button', { name: 'Apply filters' }).first().click();
    await eventually(() => hashOf()).toBe(`#/fleet?ca_id=${active.id}`);
    await eventually(listed).toEqual(['A3']);
    await page.reload();
    await page.getByRole('heading', { name: 'Devices & certificates', level: 1 }).waitFor();
    await eventually(listed).toEqual(['A3']);
    expect(await picker.inputValue()).toBe(active.id);
    // The old (retired) CA: the devices still holding one of its certificates.
    await page.goto(`${base}/app/#/fleet?ca_id=${retired.id}&sort=expiry`);
    await eventually(listed).toEqual(['A1', 'A2']);
    expect(await devices.locator('caption').textContent()).toBe('2 devices');
    expect(await seriousViolations(page)).toEqual([]);
    expect(b.consoleErrors, b.failedResponses.join('\n')).toEqual([]);

    // GET /customer/cas is tenant-scoped: each tenant its own counts, its own CA, never another tenant's.
    const globexCa = (await op('POST', '/cas', { key_type: 'ec-p256', tenant_id: 'globex', common_name: 'Globex Own CA' })).json as { id: string; subject: string };
    expect((await op('POST', `/cas/${globexCa.id}/activate`)).status).toBe(200);
    const seen = async (tenant: string) =>
      ((await t.call(tenant, 'GET', '/api/v1/customer/cas')).json.cas as { subject: string; active_certificates: number; signs_new_certificates: boolean }[])
        .map((c) => [c.subject, c.active_certificates, c.signs_new_certificates])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    const sorted = (rows: (string | number | boolean)[][]) => rows.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    expect(await seen('globex')).toEqual(
      sorted([
        [retired.subject, 1, false],
        [globexCa.subject, 0, true],
      ]),
    );
    expect(await seen('acme')).toEqual(
      sorted([
        [retired.subject, 2, false],
        [active.subject, 1, true],
      ]),
    );
  }, scaled(90_000));
});
