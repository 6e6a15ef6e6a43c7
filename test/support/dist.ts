/**
 * The compiled build in dist/ for the tests that run it (the CLI as shipped, the image's file
 * list). `npm ci` builds it through `prepare`; when a source is newer (a local edit), it is rebuilt
 * first, so these tests never run stale JavaScript.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

/**
 * Node options for a test's child that runs the shipped entry (bin/certfleet.js) rather than
 * test/support/certfleet-source.js: the same --liftoff-only that file sets when the run asks for it
 * (CERTFLEET_TEST_LIFTOFF_ONLY, vitest.config.ts): PGlite's WebAssembly compiled by V8's baseline
 * compiler only, in a process that lives seconds.
 */
export const shortLivedNodeFlags = (): string[] => (process.env.CERTFLEET_TEST_LIFTOFF_ONLY === '1' ? ['--liftoff-only'] : []);
export const DIST_MAIN = join(ROOT, 'dist', 'cli', 'main.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function ensureDistBuilt(): void {
  if (existsSync(DIST_MAIN) && statSync(DIST_MAIN).mtimeMs >= newestMtime(join(ROOT, 'src'))) return;
  const res = spawnSync('npm', ['run', 'build:server'], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
  if (res.status !== 0) throw new Error(`npm run build:server failed:\n${res.stdout}\n${res.stderr}`);
}
