/**
 * The embedded database template for the test run: built once (vitest globalSetup) in the temp
 * folder, named after the migrations it holds, so every PGlite test database loads it instead of
 * running initdb and every migration (seconds each, dozens of databases per run). The Postgres
 * counterpart is a template database (test/support/databases.ts, `ensurePgTemplate`).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIGRATIONS = fileURLToPath(new URL('../../src/storage/migrations/', import.meta.url));

/** Changes whenever a migration is added or edited, so a stale template is never loaded. */
export function migrationsHash(): string {
  const hash = createHash('sha256');
  for (const f of readdirSync(MIGRATIONS).filter((n) => n.endsWith('.sql')).sort()) hash.update(f).update(readFileSync(join(MIGRATIONS, f)));
  return hash.digest('hex').slice(0, 16);
}

export function testTemplatePath(): string {
  return join(tmpdir(), `certfleet-pglite-template-${migrationsHash()}.tar.gz`);
}

export function testTemplate(): Blob | undefined {
  const path = testTemplatePath();
  return existsSync(path) ? new Blob([readFileSync(path)]) : undefined;
}
