/**
 * vitest globalSetup: the Postgres of the run (scripts/test-setup.mjs starts a throw-away cluster
 * when none listens on 127.0.0.1:5432), handed to the test files as TEST_DATABASE_URL.
 */
import { startTestPostgres } from '../../scripts/test-setup.mjs';

export default async function setup(): Promise<() => Promise<void>> {
  const postgres = await startTestPostgres();
  process.env.TEST_DATABASE_URL = postgres.url;
  return () => postgres.stop();
}
