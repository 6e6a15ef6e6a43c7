import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadOrCreateDevSigningKey } from '../src/auth/dev-signing-key.ts';
import { devKeyPath } from '../src/composition/token-verifier.ts';
import { createWorker } from '../src/composition/worker.ts';
import { createTestDatabase, type TestDatabase } from './support/databases.ts';
import { startTestService, type TestService } from './support/service.ts';
import { startWebhookReceiver, type WebhookReceiver } from './support/webhook-receiver.ts';
import { captureLogger } from './support/capture-logger.ts';
import { exposedSeriesNames, promqlMetricNames } from './support/promql-names.ts';

const run = promisify(execFile);
const PROMETHEUS_DIR = join(import.meta.dirname, '..', 'deploy', 'prometheus');
const GRAFANA_DIR = join(import.meta.dirname, '..', 'deploy', 'grafana');
/** Series Prometheus itself creates for every scrape target, not exported by anyone. */
const SYNTHESISED_BY_PROMETHEUS = new Set(['up']);

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}
const ruleFiles = readdirSync(PROMETHEUS_DIR).filter((f) => f.endsWith('.yml') && !f.endsWith('.test.yml'));
const testFiles = readdirSync(PROMETHEUS_DIR).filter((f) => f.endsWith('.test.yml'));
const rules: (Rule & { file: string })[] = ruleFiles.flatMap((file) =>
  (parse(readFileSync(join(PROMETHEUS_DIR, file), 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules.map((r) => ({ ...r, file }))),
);
const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
const dashboards = readdirSync(GRAFANA_DIR).filter((f) => f.endsWith('.json'));
const dashboardQueries = dashboards.flatMap((file) => {
  const walk = (panels: Panel[]): { where: string; expr: string }[] =>
    panels.flatMap((p) => [...(p.targets ?? []).flatMap((t) => (t.expr ? [{ where: `${file}: ${p.title}`, expr: t.expr }] : [])), ...walk(p.panels ?? [])]);
  return walk((JSON.parse(readFileSync(join(GRAFANA_DIR, file), 'utf8')) as { panels: Panel[] }).panels);
});

describe('deploy/prometheus: promtool', () => {
  it('ships rule files, each with a unit test file, and every alert is tested firing', () => {
    expect(ruleFiles.length).toBeGreaterThan(0);
    const tested = testFiles.flatMap((f) => (parse(readFileSync(join(PROMETHEUS_DIR, f), 'utf8')) as { rule_files: string[] }).rule_files);
    expect(tested.sort()).toEqual([...ruleFiles].sort());
    const testText = testFiles.map((f) => readFileSync(join(PROMETHEUS_DIR, f), 'utf8')).join('\n');
    for (const r of rules.filter((x) => x.alert)) expect(testText, `no test for ${r.alert}`).toMatch(new RegExp(`alertname: ${r.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
  });

  it('promtool check rules accepts every rule file', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', ...ruleFiles], { cwd: PROMETHEUS_DIR });
    expect(stdout).toContain('SUCCESS');
  });

  it('promtool test rules passes every unit test', async () => {
    const { stdout } = await run('promtool', ['test', 'rules', ...testFiles], { cwd: PROMETHEUS_DIR });
    expect(stdout).toContain('SUCCESS');
    expect(stdout).not.toContain('FAILED');
  });
});

describe('metric names in rules and dashboards', () => {
  it('the name extractor finds metrics and skips functions, labels, ranges, keywords and variables', () => {
    expect(promqlMetricNames('sum by (le) (rate(certfleet_x_bucket{route!~"/a|b"}[5m])) / on(job) group_left(foo) certfleet_y > 0.5e3 unless up')).toEqual([
      'certfleet_x_bucket',
      'certfleet_y',
      'up',
    ]);
    expect(promqlMetricNames('max(certfleet_a > 0) - time() and certfleet:rec offset 1h')).toEqual(['certfleet:rec', 'certfleet_a']);
    expect(promqlMetricNames('rate(certfleet_z_total[$__rate_interval]) * ${factor}')).toEqual(['certfleet_z_total']);
  });

  it('finds queries to check in the rules and the dashboards', () => {
    expect(rules.length).toBeGreaterThan(10);
    expect(dashboards.length).toBeGreaterThan(0);
    expect(dashboardQueries.length).toBeGreaterThan(10);
  });

  describe('against a running service', () => {
    let database: TestDatabase;
    let t: TestService;
    let receiver: WebhookReceiver;
    let exposed: Set<string>;

    beforeAll(async () => {
      database = await createTestDatabase('pglite');
      t = await startTestService(database, { env: { WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true' } });
      receiver = await startWebhookReceiver();
      // Exercise what creates the labelled series: requests (ok and failing), issuance, a
      // revocation and its CRL publication, every worker task, a webhook delivery.
      expect((await t.call('acme', 'POST', '/customer/notification-webhooks', { url: receiver.url('/hook') })).status).toBe(201);
      expect((await t.call('acme', 'POST', '/customer/devices', { device_id: 'M-1' })).status).toBe(201);
      const issued = await t.call('acme', 'POST', '/customer/devices/M-1/certificates/generate', { validity_days: 5 });
      expect(issued.status).toBe(201);
      await t.call('acme', 'POST', '/customer/devices/M-1/certificates/generate', { validity_days: 20 });
      expect((await t.call('acme', 'POST', `/customer/certificates/${issued.json.certificate.id}/revoke`, { reason: 'keyCompromise' })).status).toBe(200);
      expect((await t.call('acme', 'GET', '/customer/certificates/999999')).status).toBe(404);
      await t.service.app.inject({ method: 'GET', url: '/no-such-route' });
      // A broker node reports (its agent's credential): the certfleet_broker_node_* gauges.
      const key = await loadOrCreateDevSigningKey(devKeyPath(t.config));
      const agent = await key.sign({ roles: ['broker-agent'], brokerNode: 'metrics-node', subject: 'test', ttlSeconds: 600, now: new Date() });
      const at = new Date().toISOString();
      const report = await t.service.app.inject({
        method: 'POST',
        url: '/api/v1/broker-agent/report',
        headers: { authorization: `Bearer ${agent}`, 'content-type': 'application/json' },
        payload: JSON.stringify({ kind: 'mosquitto', crl_number: '1', applied_at: at, check: { at, result: 'passed' } }),
      });
      expect(report.statusCode, report.body).toBe(200);
      const worker = await createWorker(t.config, { clock: t.clock, storage: database.storage, metrics: t.service.metrics, crl: t.service.crl.publisher, holder: 'metrics-test', logger: captureLogger([]) });
      try {
        const reports = await worker.runOnce();
        expect(reports.filter((r) => r.status !== 'ok')).toEqual([]);
      } finally {
        await worker.close();
      }
      expect(receiver.received('/hook').length).toBeGreaterThan(0);
      const scraped = await t.service.app.inject({ method: 'GET', url: '/metrics' });
      expect(scraped.statusCode).toBe(200);
      exposed = exposedSeriesNames(scraped.body);
    });
    afterAll(async () => {
      await receiver?.close();
      await t?.close();
      await database?.close();
    });

    const unknown = (expr: string) => promqlMetricNames(expr).filter((n) => !exposed.has(n) && !recorded.has(n) && !SYNTHESISED_BY_PROMETHEUS.has(n));

    it('the check would catch a renamed metric', () => {
      expect(exposed.has('certfleet_crl_entries')).toBe(true);
      expect(unknown('max(certfleet_crl_entrys)')).toEqual(['certfleet_crl_entrys']);
    });

    it('every metric a rule reads is exported by certfleet (or recorded by another rule)', () => {
      const missing = rules.flatMap((r) => unknown(r.expr).map((n) => `${r.file} ${r.alert ?? r.record}: ${n}`));
      expect(missing).toEqual([]);
    });

    it('every metric a dashboard query reads is exported by certfleet (or recorded by a rule)', () => {
      const missing = dashboardQueries.flatMap((q) => unknown(q.expr).map((n) => `${q.where}: ${n}`));
      expect(missing).toEqual([]);
    });
  });
});
