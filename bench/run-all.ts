/**
 * `npm run bench`: every benchmark in sequence, each in its own process, on real Postgres
 * (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres). Each prints its
 * own section and machine-readable BENCH_RESULT / BENCH_SERIES lines; this collects them into
 * BENCHMARKS.md (and the CRL chart, docs/benchmarks/crl-build-time.svg). Not part of `npm test`.
 * BENCH_SCALE=small: a quick run with small sizes (the report says so at the top).
 * BENCH_ONLY=issuance,api-read: run only these.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { RESULT_PREFIX, SERIES_PREFIX, SMALL, type BenchTable, type ChartSeries } from './support/results.ts';
import { lineChartSvg } from './support/svg-chart.ts';

const ROOT = join(import.meta.dirname, '..');
const CHART = 'docs/benchmarks/crl-build-time.svg';

const BENCHES: [string, string][] = [
  ['issuance', 'issuance.bench.ts'],
  ['tenant-fairness', 'tenant-fairness.bench.ts'],
  ['renewal-storm', 'renewal-storm.bench.ts'],
  ['crl-publish', 'crl-publish.bench.ts'],
  ['crl-incremental', 'crl-incremental.bench.ts'],
  ['crl-stages', 'crl-stages.bench.ts'],
  ['crl-build', 'crl-build.bench.ts'],
  ['crl-lint', 'crl-lint.bench.ts'],
  ['short-lived-crl', 'short-lived-crl.bench.ts'],
  ['hsm', 'hsm-signing.bench.ts'],
  ['broker-refusal', 'broker-refusal.bench.ts'],
  ['broker-reload-stall', 'broker-reload-stall.bench.ts'],
  ['broker-fleet', 'broker-fleet.bench.ts'],
  ['rollover', 'rollover.bench.ts'],
  ['expiry-tick', 'expiry-tick.bench.ts'],
  ['api-read', 'api-read.bench.ts'],
  ['device-list', 'device-list.bench.ts'],
  ['startup', 'startup.bench.ts'],
];

/** Runs one bench file, its output passed through, its BENCH_ lines collected. */
function runBench(file: string): Promise<{ tables: BenchTable[]; series: ChartSeries[]; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, file)], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
    const tables: BenchTable[] = [];
    const series: ChartSeries[] = [];
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith(RESULT_PREFIX)) tables.push(JSON.parse(line.slice(RESULT_PREFIX.length)) as BenchTable);
        else if (line.startsWith(SERIES_PREFIX)) series.push(JSON.parse(line.slice(SERIES_PREFIX.length)) as ChartSeries);
        else process.stdout.write(`${line}\n`);
      }
    });
    child.on('exit', (code) => resolve({ tables, series, code }));
  });
}

const cell = (c: string | number | null) => (c === null ? '-' : typeof c === 'number' ? c.toLocaleString('en-US', { maximumFractionDigits: 1 }) : c.replace(/\|/g, '\\|'));

function markdownTable(t: BenchTable): string {
  return [`| ${t.columns.join(' | ')} |`, `|${t.columns.map(() => '---').join('|')}|`, ...t.rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

function toolVersions(): string {
  const v = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return r.error ? 'not installed' : `${r.stdout}${r.stderr}`.trim().split('\n')[0];
  };
  return [
    `node ${process.version}`,
    v('openssl', ['version']),
    `python3 cryptography ${v('python3', ['-c', 'import cryptography; print(cryptography.__version__)'])}`,
    `cfssl ${v('cfssl', ['version']).replace('Version: ', '')}`,
    v('mosquitto', ['-h']).replace(/ is an MQTT.*$/, '').replace(/^mosquitto version/, 'Mosquitto'),
    `PostgreSQL ${v('psql', ['-XAtc', 'SHOW server_version', process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'])}`,
  ].join('; ');
}

const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim());
const started = new Date();
const tables: BenchTable[] = [];
const series: ChartSeries[] = [];
const failed: string[] = [];
for (const [id, file] of BENCHES) {
  if (only && !only.includes(id)) continue;
  console.log(`\n===== ${id} (${file}) =====`);
  const r = await runBench(file);
  tables.push(...r.tables);
  series.push(...r.series);
  if (r.code !== 0) failed.push(`${id} (exit ${r.code})`);
}

const machine = `${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? 'unknown CPU'}), ${Math.round(totalmem() / 2 ** 30)} GiB memory, shared with other work`;
const crlSeries = series.filter((s) => s.chart === 'crl-build-time');
if (crlSeries.length) {
  mkdirSync(join(ROOT, 'docs', 'benchmarks'), { recursive: true });
  writeFileSync(join(ROOT, CHART), lineChartSvg('CRL build time against revoked entries (log-log)', crlSeries, { x: 'revoked entries', y: 'milliseconds' }));
}
const md = [
  '# certfleet benchmarks',
  '',
  SMALL ? '> **BENCH_SCALE=small**: a quick run with reduced sizes and durations; not the headline figures. Run `npm run bench` for the full report.\n' : '',
  `Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine}.`,
  `Tools: ${toolVersions()}.`,
  '',
  'Every table compares certfleet with the peers measured **in the same run** on the same machine; ratios are peer / certfleet',
  'unless the column says otherwise. Regenerate with `npm run bench` (needs Postgres at `TEST_DATABASE_URL`, openssl, python3 with',
  '`cryptography`, `mosquitto`, and `cfssl` from `apt-get install golang-cfssl`; a missing peer is reported in its table).',
  '',
  ...(crlSeries.length ? [`![CRL build time against entry count](${CHART})`, ''] : []),
  ...tables.flatMap((t) => [`## ${t.title}`, '', t.description, '', markdownTable(t), '', ...(t.notes ?? []).map((n) => `- ${n}`), ...(t.notes?.length ? [''] : [])]),
  ...(failed.length ? ['## Failed', '', ...failed.map((f) => `- ${f}: see the run's output`), ''] : []),
].join('\n');
writeFileSync(join(ROOT, 'BENCHMARKS.md'), md);
console.log(`\nwrote BENCHMARKS.md (${tables.length} tables${crlSeries.length ? `, ${CHART}` : ''})${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);
process.exitCode = failed.length ? 1 : 0;
