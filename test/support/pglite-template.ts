/**
 * The embedded database template for the test run: built once (vitest globalSetup) in the temp
 * folder, named after the migrations it holds, so every PGlite test database loads it instead of
 * running initdb and every migration (seconds each, dozens of databases per run). The Postgres
 * counterpart is a template database (test/support/databases.ts, `ensurePgTemplate`).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const MIGRATIONS = fileURLToPath(new URL('../../src/storage/migrations/', import.meta.url));

/** Changes whenever a migration is added or edited, so a stale template is never loaded. */
export function migrationsHash(): string {
  const hash = createHash('sha256');
  for (const f of readdirSync(MIGRATIONS).filter((n) => n.endsWith('.sql')).sort()) hash.update(f).update(readFileSync(join(MIGRATIONS, f)));
  return hash.digest('hex').slice(0, 16);
}

const WRITER = fileURLToPath(new URL('../../src/storage/pglite-template.ts', import.meta.url));
const PGLITE_PACKAGE = fileURLToPath(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url));

/**
 * The run's template, named after what makes it: the migrations, the code that writes it
 * (src/storage/pglite-template.ts) and PGlite's version. One found there was written, atomically,
 * by this same code from these same migrations: test/pglite-template.test.ts checks it as it is
 * instead of writing another (about 8 s of CPU on every run after the first on a machine).
 */
let templatePath: string | undefined;
export function testTemplatePath(): string {
  if (templatePath) return templatePath;
  const hash = createHash('sha256').update(migrationsHash()).update(readFileSync(WRITER));
  if (existsSync(PGLITE_PACKAGE)) hash.update(String((JSON.parse(readFileSync(PGLITE_PACKAGE, 'utf8')) as { version?: string }).version));
  templatePath = join(tmpdir(), `certfleet-pglite-template-${hash.digest('hex').slice(0, 16)}.tar.gz`);
  return templatePath;
}

/**
 * The run's template as a plain tar beside the gzipped one (written by global-setup.ts): what
 * every embedded database of the run starts from (CERTFLEET_PGLITE_TEMPLATE: the CLI processes the
 * tests spawn and the services they start on a data dir of their own). Unpacked once per run
 * instead of once per process (`unpackTemplate` takes either): about 0.2 s of CPU per such start
 * (a `migrate` on a new data dir: 2.94 -> 2.78 s, 5 runs each).
 */
export function testTemplateTarPath(): string {
  return testTemplatePath().replace(/\.tar\.gz$/, '.tar');
}

/** Writes the plain tar beside the template (atomically: written aside, then renamed) unless there. */
export function writeTestTemplateTar(): string {
  const tarPath = testTemplateTarPath();
  if (!existsSync(tarPath)) {
    const aside = `${tarPath}.${process.pid}.tmp`;
    writeFileSync(aside, gunzipSync(readFileSync(testTemplatePath())), { mode: 0o644 });
    renameSync(aside, tarPath);
  }
  return tarPath;
}

let unpacked: { path: string; tar: Buffer<ArrayBuffer> } | undefined;

/**
 * The template as an uncompressed tar, gunzipped once per worker process (a worker runs many
 * files, each with its own databases): PGlite's loader first tried the gzip bytes as a tar, then
 * gunzipped them with a DecompressionStream at every database, about 0.3 s of CPU each.
 */
export function testTemplate(): Blob | undefined {
  const path = testTemplatePath();
  if (unpacked?.path !== path) {
    if (!existsSync(path)) return undefined;
    const tarPath = testTemplateTarPath();
    unpacked = { path, tar: existsSync(tarPath) ? readFileSync(tarPath) : gunzipSync(readFileSync(path)) };
  }
  return new Blob([unpacked.tar]);
}
