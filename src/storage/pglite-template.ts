/**
 * A migrated, empty PGlite data directory, packed once at build time (`npm run build`, run by
 * `npm install`), from which a new embedded database starts instead of running initdb and every
 * migration: initdb is most of a first `npm start` (measured in the README's Start-up section).
 * It holds the schema, roles and policies only: no tenant data, no key, nothing secret.
 * A template older than the migrations is still safe: `migrate()` applies what it lacks.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { writeFileAtomic } from '../support/atomic-file.ts';
import { migrate } from './migrate.ts';
import { createPgliteDriver, PGLITE_OPTIONS } from './pglite-driver.ts';

/** Beside the compiled module (dist/storage/); absent when running from the TypeScript sources. */
export const PGLITE_TEMPLATE_PATH = fileURLToPath(new URL('./pglite-template.tar.gz', import.meta.url));

/** Builds the template: a new in-memory database, every migration, the data dir dumped (gzip). */
export async function writePgliteTemplate(path: string = PGLITE_TEMPLATE_PATH): Promise<void> {
  const db = await PGlite.create(PGLITE_OPTIONS);
  try {
    await migrate(createPgliteDriver(db));
    const dump = await db.dumpDataDir('gzip');
    await writeFileAtomic(path, new Uint8Array(await dump.arrayBuffer()), 0o644);
  } finally {
    await db.close();
  }
}

/** The template to start `dataDir` from: only for a data dir that holds no database yet. */
export function templateFor(dataDir: string, path: string = PGLITE_TEMPLATE_PATH): Blob | undefined {
  if (!existsSync(path)) return undefined;
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) return undefined;
  return new Blob([readFileSync(path)]);
}
