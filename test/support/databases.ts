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

/**
 * PGlite test databases are kept for the next file of the same worker process (vitest runs files
 * one after another in one process, `isolate: false`): a new one costs about 0.6 s of CPU (loading
 * the template into a new WebAssembly Postgres), taking a kept one back about a fifth of that
 * (measured 2026-12-07: 560-640 ms against 90-180 ms, four in a row in one process). A database is
 * kept only when it is as a new one would be, checked when it is handed back: every table emptied
 * (the TRUNCATE of `reset()`, identities restarted), the session reset (`DISCARD ALL`: settings,
 * prepared statements, temporary tables, advisory locks), and its catalogue identical to a new
 * one's (`CATALOGUE_FINGERPRINT`: tables, columns, defaults, functions, triggers, policies, grants,
 * roles, role settings, planner statistics, applied migrations). A file that altered the schema,
 * created a role or ran ANALYZE leaves a database that is closed instead. The driver handed out
 * refuses every call once closed, so late work of a finished file never reaches the next one's data.
 * `CERTFLEET_TEST_FRESH_PGLITE=1` gives every file new ones.
 */
const CATALOGUE_FINGERPRINT = `
  SELECT md5(string_agg(item, E'\\n' ORDER BY item)) AS fingerprint FROM (
    SELECT 'class ' || c.relname || ' ' || c.relkind::text || ' ' || c.relrowsecurity || ' ' || c.relforcerowsecurity || ' ' || coalesce(c.relacl::text, '') AS item
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || ' ' || p.prosecdef || ' ' || coalesce(p.proacl::text, '')
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
    UNION ALL SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname || ' ' || t.tgenabled::text FROM pg_trigger t WHERE NOT t.tgisinternal
    UNION ALL SELECT 'policy ' || p.polrelid::regclass::text || ' ' || p.polname || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
      FROM pg_policy p
    UNION ALL SELECT 'role ' || r.rolname || ' ' || r.rolsuper || ' ' || r.rolbypassrls || ' ' || r.rolcanlogin || ' ' || r.rolinherit FROM pg_roles r
    UNION ALL SELECT 'member ' || m.roleid::regrole::text || ' ' || m.member::regrole::text FROM pg_auth_members m
    UNION ALL SELECT 'setting ' || s.setrole || ' ' || s.setdatabase || ' ' || array_to_string(s.setconfig, ';') FROM pg_db_role_setting s
    UNION ALL SELECT 'statistics ' || s.starelid::regclass::text || ' ' || s.staattnum FROM pg_statistic s
      JOIN pg_class c ON c.oid = s.starelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL SELECT 'migration ' || m::text FROM schema_migrations m
  ) catalogue`;

const keptPglite: PGlite[] = [];
const KEEP_AT_MOST = 2;
let newPgliteFingerprint: string | undefined;

async function fingerprintOf(pglite: PGlite): Promise<string> {
  return (await pglite.query<{ fingerprint: string }>(CATALOGUE_FINGERPRINT)).rows[0]!.fingerprint;
}

async function newPglite(): Promise<PGlite> {
  const template = testTemplate();
  const pglite = await PGlite.create({ ...PGLITE_OPTIONS, ...TEST_PGLITE, ...(template ? { loadDataDir: template } : {}) });
  newPgliteFingerprint ??= await fingerprintOf(pglite);
  return pglite;
}

/** Hands a test's PGlite back: kept, emptied and reset, when it is as a new one would be; closed otherwise. */
async function releasePglite(pglite: PGlite): Promise<void> {
  if (process.env.CERTFLEET_TEST_FRESH_PGLITE === '1' || keptPglite.length >= KEEP_AT_MOST || pglite.closed) return pglite.close();
  try {
    await resetTables(createPgliteDriver(pglite));
    await pglite.exec('DISCARD ALL');
    if ((await fingerprintOf(pglite)) === newPgliteFingerprint) {
      keptPglite.push(pglite);
      return;
    }
  } catch {
    // not reusable (an aborted transaction, a broken catalogue): closed below
  }
  await pglite.close();
}

/** A driver over `pglite` that refuses every call once closed; `release` decides what happens to the database. */
function ownedPgliteDriver(pglite: PGlite, release: (pglite: PGlite) => Promise<void>): Driver & { db: PGlite } {
  const inner = createPgliteDriver(pglite);
  let closed: Promise<void> | null = null;
  return {
    ...inner,
    transaction: (fn, prelude) => (closed ? Promise.reject(new Error('test database closed')) : inner.transaction(fn, prelude)),
    close: () => (closed ??= release(pglite)),
  };
}

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
    driver = ownedPgliteDriver(keptPglite.pop() ?? (await newPglite()), releasePglite);
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
