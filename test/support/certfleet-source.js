#!/usr/bin/env node
// The CLI the tests spawn, never a stale one: the compiled dist/ when it is newer than every file of
// src/ (what `npm test` builds before the run: about 300 ms of CPU less per spawn than compiling the
// sources again), else the TypeScript sources through tsx (a source edited since the last build).
// test/dist-cli.test.ts runs the real bin (bin/certfleet.js).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

// In a test run (vitest.config.ts sets CERTFLEET_TEST_LIFTOFF_ONLY=1) V8 compiles WebAssembly with
// its baseline compiler only: PGlite is a whole Postgres in WebAssembly, and a child process that
// lives seconds never pays back the optimising compiler's work on it (a `serve` on PGlite: about
// 2.5 s of CPU less per start). The same code runs, with the same results; the benchmarks, which
// spawn this file too, do not set it.
if (process.env.CERTFLEET_TEST_LIFTOFF_ONLY === '1') setFlagsFromString('--liftoff-only');

const root = fileURLToPath(new URL('../../', import.meta.url));
const distMain = `${root}dist/cli/main.js`;

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

const distCurrent = process.env.CERTFLEET_TEST_FROM_SOURCES !== '1' && existsSync(distMain) && statSync(distMain).mtimeMs >= newestMtime(`${root}src`);
// The build's one-file CLI, as bin/certfleet.js runs it (built from dist/ right after it, so never older).
const distBundle = `${root}dist/cli/main.bundle.js`;
const bundleCurrent = distCurrent && existsSync(distBundle) && statSync(distBundle).mtimeMs >= statSync(distMain).mtimeMs;
let main;
if (distCurrent) {
  // As bin/certfleet.js: the long-running commands on PGlite compile its WebAssembly while the CLI loads.
  if (!process.env.DATABASE_URL && ['serve', 'worker'].includes(process.argv[2])) {
    const wasm = await import(`${root}dist/storage/pglite-wasm.js`);
    wasm.useBaselineWasmCompiler();
    wasm.pgliteWasmModule().catch(() => {});
  }
  ({ main } = await import(bundleCurrent ? distBundle : distMain));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../../src/cli/main.ts'));
}
const code = await main(process.argv.slice(2));
// As bin/certfleet.js: a command that failed ends the process.
if (code !== 0) process.exit(code);
process.exitCode = code;
