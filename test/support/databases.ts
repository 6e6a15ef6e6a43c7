import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { createDatabase, type Database } from '../../src/storage/database.ts';
import type { Driver } from '../../src/storage/driver.ts';
import { migrate } from '../../src/storage/migrate.ts';
import { createPgDriver } from '../../src/storage/pg-driver.ts';
import { createPgliteDriver, PGLITE_OPTIONS } from '../../src/storage/pglite-driver.ts';
import { migrationsHash, testTemplate } from './pglite-template.ts';
import type { Storage } from '../../src/composition/open-storage.ts';

/** The admin connection used to create one throw-away database per test file. */
export const TEST_PG_ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export type DriverKind = 'pg' | 'pglite';
export const DRIVERS: DriverKind[] = ['pglite', 'pg'];

/**
 * The driver of a test file whose subject does not depend on it: HTTP validation and use cases
 * whose SQL is the same statements on both drivers. Such a file runs on the one driver it names
 * (half of them on each, see README "Tests"), which halves its cost; `CERTFLEET_TEST_ALL_DRIVERS=1`
 * runs it on both. The suites whose subject is driver-specific (CRL publication: in-process on
 * PGlite, LISTEN/NOTIFY across processes on Postgres; concurrency and locks; row-level security;
 * query plans; crash durability; the schema's defences) keep `DRIVERS`.
 */
export function oneDriver(kind: DriverKind): DriverKind[] {
  return process.env.CERTFLEET_TEST_ALL_DRIVERS === '1' ? DRIVERS : [kind];
}

/** Every table emptied by one TRUNCATE (one statement, its locks taken in name order). */
const TABLES_IN_DELETE_ORDER = `
  DO $$ BEGIN
    EXECUTE (SELECT 'TRUNCATE TABLE ' || string_agg(format('%I', tablename), ', ' ORDER BY tablename) || ' RESTART IDENTITY CASCADE'
             FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations');
  END $$;`;

/**
 * Empties the database between tests. A service under test may still be finishing work of the
 * previous test (a publication, a webhook delivery) and hold row locks the TRUNCATE waits for:
 * Postgres then picks one of the two as a deadlock victim. When that is the reset, it is tried
 * again (the service's work has ended by then); a few tries, then the error.
 */
async function resetTables(driver: Driver): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await driver.transaction((tx) => tx.exec(TABLES_IN_DELETE_ORDER));
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== '40P01' || attempt >= 5) throw error;
    }
  }
}

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

async function asAdmin(sql: string, adminUrl = TEST_PG_ADMIN_URL): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

const databaseUrl = (name: string, adminUrl = TEST_PG_ADMIN_URL) => {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
};

/**
 * A new Postgres database on the admin server (tests and benchmarks), and how to drop it: empty,
 * or a copy of `template` (CREATE DATABASE … TEMPLATE: a file copy instead of every migration).
 */
export async function createThrowawayDatabase(prefix: string, template?: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await asAdmin(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${template}` : ''}`);
  return { url: databaseUrl(name), drop: () => asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/**
 * The migrated template database of the test run (vitest globalSetup), named after the
 * migrations it holds like the PGlite template, built once per set of migrations and kept on the
 * server: every Postgres test database is a copy of it (about a fifth of the time of migrating a
 * new one). Built under a temporary name and renamed when complete, so a run that dies half-way
 * or two runs building it at once never leave a half-migrated template.
 */
export async function ensurePgTemplate(adminUrl: string): Promise<string> {
  const name = `certfleet_template_${migrationsHash()}`;
  const exists = async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      return (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rows.length > 0;
    } finally {
      await admin.end();
    }
  };
  if (await exists()) return name;
  const building = `${name}_${randomBytes(4).toString('hex')}`;
  await asAdmin(`CREATE DATABASE ${building}`, adminUrl);
  try {
    const driver = createPgDriver(databaseUrl(building, adminUrl));
    try {
      await migrate(driver);
    } finally {
      await driver.close();
    }
    await asAdmin(`ALTER DATABASE ${building} RENAME TO ${name}`, adminUrl);
  } catch (error) {
    await asAdmin(`DROP DATABASE IF EXISTS ${building} WITH (FORCE)`, adminUrl);
    if ((error as { code?: string }).code === '42P04' && (await exists())) return name; // another run built it meanwhile
    throw error;
  }
  return name;
}

/**
 * PGlite test databases (in memory, seconds to minutes of life, at most some thousands of rows)
 * get a 32 MB buffer pool instead of Postgres's 128 MB: starting one cost about 0.2 s of CPU less
 * (0.85 -> 0.67 s measured over 4 databases in one process, with the template below). The
 * service's own embedded database (src/storage/pglite-driver.ts) keeps PGlite's defaults.
 */
const TEST_PGLITE = { startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=32MB'] };

export async function createTestDatabase(kind: DriverKind): Promise<TestDatabase> {
  let driver: Driver;
  let url: string | null = null;
  let dropDatabase = async () => {};
  if (kind === 'pg') {
    // A copy of the run's migrated template (global-setup.ts); migrate() below then finds nothing to do.
    const created = await createThrowawayDatabase('certfleet_test', process.env.CERTFLEET_TEST_PG_TEMPLATE);
    url = created.url;
    driver = createPgDriver(url);
    dropDatabase = created.drop;
  } else {
    const template = testTemplate();
    driver = createPgliteDriver(await PGlite.create({ ...PGLITE_OPTIONS, ...TEST_PGLITE, ...(template ? { loadDataDir: template } : {}) }));
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
    reset: () => resetTables(driver),
    async close() {
      await driver.close();
      await dropDatabase();
    },
  };
}
