import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, type Dirent } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/storage/migrate.ts';
import { createPgliteDriver, openPglite } from '../src/storage/pglite-driver.ts';
import { templateFor, unpackTemplate, writePgliteTemplate } from '../src/storage/pglite-template.ts';

/** What the schema is made of: tables with their RLS flags, policies, roles, applied migrations. */
async function schemaOf(db: PGlite): Promise<unknown> {
  const q = async (sql: string) => (await db.query(sql)).rows;
  return {
    tables: await q(`SELECT tablename, rowsecurity FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`),
    columns: await q(`SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`),
    indexes: await q(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`),
    policies: await q(`SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2`),
    roles: await q(`SELECT rolname, rolbypassrls FROM pg_roles WHERE rolname LIKE 'certfleet%' ORDER BY 1`),
    migrations: await q(`SELECT name FROM schema_migrations ORDER BY 1`),
  };
}

describe('the embedded database template (a packed, migrated, empty data dir)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'certfleet-template-'));
  const template = join(dir, 'template.tar.gz');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** The schema of a data dir PGlite's own loader made from the template (the first test opens one: one PGlite less). */
  let viaLoaderSchema: unknown;
  const schemaViaLoader = async () => {
    if (viaLoaderSchema === undefined) {
      const viaLoader = join(dir, 'via-loader');
      const loaded = await openPglite(viaLoader, templateFor(viaLoader, template));
      viaLoaderSchema = await schemaOf(loaded);
      await loaded.close();
    }
    return viaLoaderSchema;
  };

  it('a new data dir started from it has every migration, row-level security and the roles, and no rows', async () => {
    // What writePgliteTemplate writes: the run's template, written by that function from these
    // migrations (test/support/global-setup.ts; its name is a hash of both, testTemplatePath), else written here.
    const builtByThisRun = process.env.CERTFLEET_TEST_PGLITE_TEMPLATE_BUILT;
    if (builtByThisRun && existsSync(builtByThisRun)) copyFileSync(builtByThisRun, template);
    else await writePgliteTemplate(template);
    const dataDir = join(dir, 'db');
    const blob = templateFor(dataDir, template);
    expect(blob).toBeInstanceOf(Blob);
    const db = await openPglite(dataDir, blob);
    try {
      expect(await migrate(createPgliteDriver(db))).toEqual([]); // nothing left to apply
      viaLoaderSchema = await schemaOf(db);
      const schema = viaLoaderSchema as { tables: { tablename: string; rowsecurity: boolean }[]; roles: { rolname: string }[]; migrations: { name: string }[] };
      const files = readdirSync(fileURLToPath(new URL('../src/storage/migrations/', import.meta.url))).filter((f) => f.endsWith('.sql')).sort();
      expect(schema.migrations.map((m) => m.name)).toEqual(files);
      expect(schema.roles.map((r) => r.rolname)).toEqual(expect.arrayContaining(['certfleet_app', 'certfleet_operator']));
      for (const t of ['device_registry', 'device_certificates', 'certificate_rotations', 'fleet_alert', 'audit_events']) {
        expect(schema.tables.find((x) => x.tablename === t)?.rowsecurity, t).toBe(true);
      }
      const counts = await db.query<{ t: string; n: number }>(
        `SELECT t, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', t), false, true, '')))[1]::text::int AS n
           FROM unnest(ARRAY(SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations')) AS t`,
      );
      expect(counts.rows.length).toBeGreaterThan(5);
      expect(counts.rows.filter((r) => r.n !== 0)).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it("unpacked by Node (not PGlite's loader), it opens as an existing database with the same schema, nothing left to migrate", async () => {
    // The schema PGlite's loader gave: the first test's database (that test also writes the
    // template), opened again here only if that test stopped before reading it.
    const expected = await schemaViaLoader();
    const dataDir = join(dir, 'unpacked');
    mkdirSync(dataDir); // openStorage creates it (empty) first
    expect(unpackTemplate(dataDir, template)).toBe(true);
    expect(readdirSync(dataDir)).toContain('PG_VERSION');
    expect(readdirSync(dir).filter((f) => f.endsWith('.unpacking'))).toEqual([]);
    expect(templateFor(dataDir, template)).toBeUndefined(); // PGlite opens it as it is
    // The same template as a plain tar (what a test run hands its processes, global-setup.ts): the same files.
    const plain = join(dir, 'template.tar');
    writeFileSync(plain, gunzipSync(readFileSync(template)));
    const fromPlain = join(dir, 'unpacked-plain');
    expect(unpackTemplate(fromPlain, plain)).toBe(true);
    const files = (root: string) =>
      (readdirSync(root, { recursive: true, withFileTypes: true }) as Dirent[])
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(root.length))
        .sort();
    expect(files(fromPlain)).toEqual(files(dataDir));
    for (const f of files(dataDir)) expect(readFileSync(join(fromPlain, f)).equals(readFileSync(join(dataDir, f))), f).toBe(true);
    const db = await openPglite(dataDir);
    try {
      expect((await db.query<{ shared_buffers: string }>('SHOW shared_buffers')).rows[0]?.shared_buffers).toBe('128MB'); // PGlite's default
      expect(await migrate(createPgliteDriver(db))).toEqual([]);
      expect(await schemaOf(db)).toEqual(expected);
      await db.query('CREATE TEMP TABLE t (x int)'); // a working database
    } finally {
      await db.close();
    }
    // Opened again (a restart): still the same database; here with the buffer pool a setting asks
    // for (CERTFLEET_PGLITE_SHARED_BUFFERS, which a test run sets for every process it starts).
    const again = await openPglite(dataDir, undefined, { sharedBuffers: loadConfig({ CERTFLEET_PGLITE_SHARED_BUFFERS: '24MB' }).pgliteSharedBuffers });
    expect((await again.query<{ shared_buffers: string }>('SHOW shared_buffers')).rows[0]?.shared_buffers).toBe('24MB');
    expect(await schemaOf(again)).toEqual(expected);
    await again.close();
  });

  it('CERTFLEET_PGLITE_SHARED_BUFFERS takes a size in MB or GB, at most 8GB; unset leaves PGlite its default', () => {
    expect(loadConfig({}).pgliteSharedBuffers).toBeNull();
    expect(loadConfig({ CERTFLEET_PGLITE_SHARED_BUFFERS: '1GB' }).pgliteSharedBuffers).toBe('1GB');
    for (const bad of ['32', '0MB', '32mb', '9GB', '32MB; x', '-1MB']) {
      expect(() => loadConfig({ CERTFLEET_PGLITE_SHARED_BUFFERS: bad }), bad).toThrow(`CERTFLEET_PGLITE_SHARED_BUFFERS must be a size such as 32MB or 1GB, at most 8GB (got "${bad}")`);
    }
  });

  it('is never unpacked into a data dir that already holds something, nor when it is missing', () => {
    const used = join(dir, 'used-unpack');
    mkdirSync(used);
    writeFileSync(join(used, 'PG_VERSION'), '17\n');
    expect(unpackTemplate(used, template)).toBe(false);
    expect(readdirSync(used)).toEqual(['PG_VERSION']);
    expect(unpackTemplate(join(dir, 'new-unpack'), join(dir, 'no-such-template.tar.gz'))).toBe(false);
  });

  it('is never used for a data dir that already holds something, nor when it is missing', () => {
    const used = join(dir, 'used');
    mkdirSync(used);
    writeFileSync(join(used, 'PG_VERSION'), '17\n');
    expect(templateFor(used, template)).toBeUndefined();
    expect(templateFor(join(dir, 'new'), join(dir, 'no-such-template.tar.gz'))).toBeUndefined();
  });
});
