/**
 * A migrated, empty PGlite data directory, packed once at build time (`npm run build`, run by
 * `npm install`), from which a new embedded database starts instead of running initdb and every
 * migration: initdb is most of a first `npm start` (measured in the README's Start-up section).
 * It holds the schema, roles and policies only: no tenant data, no key, nothing secret.
 * A template older than the migrations is still safe: `migrate()` applies what it lacks.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
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

const BLOCK = 512;
const field = (header: Buffer, start: number, length: number) => {
  const end = header.indexOf(0, start);
  return header.toString('utf8', start, end === -1 || end > start + length ? start + length : end);
};

/**
 * The template unpacked by Node itself (native gunzip, one write per file) into `dataDir` when it
 * holds no database yet: PGlite then opens it as an existing database. PGlite's own loader
 * (`loadDataDir`) writes the same files through its in-WebAssembly file system, about a second of
 * CPU more on a first start (README, Start-up). The files go to a sibling directory renamed into
 * place at the end, so a start killed half-way leaves no half-written database behind. Returns
 * false (nothing written) when the template is missing or dataDir is in use; throws when the
 * archive holds anything but plain files and directories inside the data dir. The template may be
 * gzipped or a plain tar.
 */
export function unpackTemplate(dataDir: string, path: string = PGLITE_TEMPLATE_PATH): boolean {
  if (!existsSync(path)) return false;
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) return false;
  const packed = readFileSync(path);
  // gzip (what the build writes), or a plain tar: a test run keeps its template unpacked
  // (test/support/global-setup.ts), since every process that starts an embedded database from it
  // would otherwise gunzip the same 40 MB again (about 0.2 s of CPU each).
  const tar = packed[0] === 0x1f && packed[1] === 0x8b ? gunzipSync(packed) : packed;
  const staging = join(dirname(dataDir), `.${Date.now()}-${process.pid}.unpacking`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o700 });
  try {
    for (let off = 0; off + BLOCK <= tar.length; ) {
      const header = tar.subarray(off, off + BLOCK);
      if (header.every((b) => b === 0)) break; // end of archive
      const name = field(header, 0, 100);
      const prefix = field(header, 345, 155);
      const size = parseInt(field(header, 124, 12).trim() || '0', 8);
      const type = String.fromCharCode(header[156] || 48);
      const relative = (prefix ? `${prefix}/${name}` : name).replace(/^\/+/, '').replace(/\/+$/, '');
      if (relative.split('/').some((part) => part === '..') || !Number.isSafeInteger(size)) throw new Error(`PGlite template: unexpected entry "${relative}"`);
      const target = join(staging, relative);
      const start = off + BLOCK;
      off = start + Math.ceil(size / BLOCK) * BLOCK;
      if (type === '5') mkdirSync(target, { recursive: true, mode: 0o700 });
      else if (type === '0') {
        mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
        writeFileSync(target, tar.subarray(start, start + size), { mode: 0o600 });
      } else throw new Error(`PGlite template: unexpected entry type "${type}" (${relative})`);
    }
    if (!existsSync(join(staging, 'PG_VERSION'))) throw new Error('PGlite template: no PG_VERSION');
    if (existsSync(dataDir)) rmdirSync(dataDir); // empty (checked above)
    renameSync(staging, dataDir);
    return true;
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
}
