/**
 * vitest globalSetup, once per run before any test file: the Postgres of the run
 * (scripts/test-setup.mjs starts a throw-away cluster when none listens on 127.0.0.1:5432), handed
 * to the test files as TEST_DATABASE_URL; the migrated template database every Postgres test
 * database copies (CERTFLEET_TEST_PG_TEMPLATE, test/support/databases.ts); and the PGlite
 * template every embedded test database loads (test/support/pglite-template.ts).
 */
import { existsSync } from 'node:fs';
import { startTestPostgres } from '../../scripts/test-setup.mjs';
import { writePgliteTemplate } from '../../src/storage/pglite-template.ts';
import { ensurePgTemplate } from './databases.ts';
import { testTemplatePath } from './pglite-template.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const postgres = await startTestPostgres();
  process.env.TEST_DATABASE_URL = postgres.url;
  process.env.CERTFLEET_TEST_PG_TEMPLATE = await ensurePgTemplate(postgres.url);
  const template = testTemplatePath();
  if (!existsSync(template)) await writePgliteTemplate(template);
  return () => postgres.stop();
}
