/**
 * vitest globalSetup, once per run before any test file: the Postgres of the run
 * (scripts/test-setup.mjs starts a throw-away cluster when none listens on 127.0.0.1:5432), handed
 * to the test files as TEST_DATABASE_URL; the migrated template database every Postgres test
 * database copies (CERTFLEET_TEST_PG_TEMPLATE, test/support/databases.ts); and the PGlite
 * template every embedded test database loads (test/support/pglite-template.ts).
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestPostgres } from '../../scripts/test-setup.mjs';
import { writePgliteTemplate } from '../../src/storage/pglite-template.ts';
import { ensurePgTemplate } from './databases.ts';
import { testTemplatePath, writeTestTemplateTar } from './pglite-template.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const postgres = await startTestPostgres();
  process.env.TEST_DATABASE_URL = postgres.url;
  process.env.CERTFLEET_TEST_PG_TEMPLATE = await ensurePgTemplate(postgres.url);
  const template = testTemplatePath();
  if (!existsSync(template)) await writePgliteTemplate(template);
  // Written by this code from these migrations (its name says so: testTemplatePath), by this run or
  // an earlier one: test/pglite-template.test.ts checks this one instead of running initdb and
  // every migration a second time (about 8 s of CPU).
  process.env.CERTFLEET_TEST_PGLITE_TEMPLATE_BUILT = template;
  // Every embedded data dir the tests open (the CLI and services in the test process run from the
  // TypeScript sources, which have no template beside them and ran initdb and every migration, about
  // 2 to 3 s of CPU each; and the CLI processes they spawn) starts from this run's template.
  // As a plain tar (test/support/pglite-template.ts, writeTestTemplateTar): gunzipped once for the
  // run instead of in every process that starts an embedded database.
  process.env.CERTFLEET_PGLITE_TEMPLATE = writeTestTemplateTar();
  // Their buffer pool: 32MB, as the test databases (databases.ts), instead of 128MB: about 0.4 s of
  // CPU less per process that opens an embedded database (measured: 1.37 -> 0.98 s, 3 starts each).
  process.env.CERTFLEET_PGLITE_SHARED_BUFFERS ??= '32MB';
  return async () => {
    logServerCpu((postgres as { dataDir?: string }).dataDir);
    await postgres.stop();
  };
}

/**
 * With CERTFLEET_TEST_CPU_LOG (test/support/cpu-time.ts): the CPU seconds the run's throw-away
 * Postgres used (its postmaster and every backend that ended), which the test files' own figures
 * leave out. A shared server on 5432 serves others too: nothing is logged for it.
 */
function logServerCpu(dataDir: string | undefined): void {
  const log = process.env.CERTFLEET_TEST_CPU_LOG;
  if (!log || !dataDir) return;
  try {
    const pid = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]?.trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    const at = (i: number) => fields[i - 3] ?? 0;
    const own = (at(14) + at(15)) / 100;
    const children = (at(16) + at(17)) / 100;
    appendFileSync(log, `${JSON.stringify({ file: 'postgres (throw-away cluster)', own, children, processTotal: +(own + children).toFixed(2) })}\n`);
  } catch {
    // no figure rather than a failed run: the accounting is optional
  }
}
