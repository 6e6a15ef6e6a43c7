import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabase, type Database } from '../../src/storage/database.ts';
import type { Driver } from '../../src/storage/driver.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { createPgDriver } from '../../src/storage/pg-driver.ts';
import { createPgliteDriver, openPglite } from '../../src/storage/pglite-driver.ts';
import { testTemplate } from './pglite-template.ts';
import type { Storage } from '../../src/composition/open-storage.ts';

/** The admin connection used to create one throw-away database per test file. */
export const TEST_PG_ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export type DriverKind = 'pg' | 'pglite';
export const DRIVERS: DriverKind[] = ['pglite', 'pg'];

const TABLES_IN_DELETE_ORDER = `
  DO $$ DECLARE t text; BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations' LOOP
      EXECUTE format('TRUNCATE TABLE %I RESTART IDENTITY CASCADE', t);
    END LOOP;
  END $$;`;

export interface TestDatabase {
  kind: DriverKind;
  driver: Driver;
  db: Database;
  /** For services under test: closing it is the fixture's job, not theirs. */
  storage: Storage;
  /** A connection string to the same database (pg only), for child processes. */
  url: string | null;
  reset(): Promise<void>;
  close(): Promise<void>;
}

async function asAdmin(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

/** A new, empty Postgres database on the admin server (tests and benchmarks), and how to drop it. */
export async function createThrowawayDatabase(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await asAdmin(`CREATE DATABASE ${name}`);
  const u = new URL(TEST_PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return { url: u.toString(), drop: () => asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

export async function createTestDatabase(kind: DriverKind): Promise<TestDatabase> {
  let driver: Driver;
  let url: string | null = null;
  let dropDatabase = async () => {};
  if (kind === 'pg') {
    const created = await createThrowawayDatabase('certfleet_test');
    url = created.url;
    driver = createPgDriver(url);
    dropDatabase = created.drop;
  } else {
    driver = createPgliteDriver(await openPglite(undefined, testTemplate()));
  }
  await migrate(driver);
  const db = createDatabase(driver);
  const storage: Storage = { db, driver, close: async () => {} };
  return {
    kind,
    driver,
    db,
    storage,
    url,
    reset: () => driver.transaction((tx) => tx.exec(TABLES_IN_DELETE_ORDER)),
    async close() {
      await driver.close();
      await dropDatabase();
    },
  };
}
