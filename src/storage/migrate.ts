import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Driver } from './driver.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Any constant works: it serialises concurrent migrators on one database.
const MIGRATION_LOCK = 7_240_331;

/**
 * Applies pending SQL migrations in file-name order, each in its own transaction, as the
 * connecting user. `until`: stop after the migration whose name starts with it (tests of a
 * migration over existing data).
 */
export async function migrate(driver: Driver, options: { until?: string } = {}): Promise<string[]> {
  const all = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort();
  const last = options.until === undefined ? all.length : all.findIndex((f) => f.startsWith(options.until!)) + 1;
  if (last === 0) throw new Error(`no migration named ${options.until}`);
  const files = all.slice(0, last);
  // A restart's usual case, in one transaction: every migration applied already (one query
  // for the names instead of a transaction and three statements per file, and no file read).
  const alreadyApplied = await driver.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query('CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
    return new Set((await tx.query<{ name: string }>('SELECT name FROM schema_migrations')).rows.map((r) => r.name));
  });
  const applied: string[] = [];
  for (const file of files) {
    if (alreadyApplied.has(file)) continue; // applied rows are never removed
    const sql = await readFile(MIGRATIONS_DIR + file, 'utf8');
    await driver.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.query('CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())');
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE name = $1', [file]);
      if (done.rows.length > 0) return;
      await tx.exec(sql);
      await tx.query('INSERT INTO schema_migrations (name) VALUES ($1)', [file]);
      applied.push(file);
    });
  }
  return applied;
}
