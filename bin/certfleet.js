#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (built by `npm run build`, run by `npm install` through `prepare`):
// its one-file bundle when the build made it, else the compiled modules (CERTFLEET_UNBUNDLED=1 forces those).
// `certfleet --help` (alone) prints the usage text the build saved beside the compiled CLI
// (dist/cli/usage.txt, written from the command specs by scripts/build-server.mjs) without loading
// the CLI at all; without that file, or with anything else, the CLI runs as usual.
import { existsSync, readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const usage = argv.length === 1 && ['--help', '-h', 'help'].includes(argv[0]) ? savedUsage() : null;
if (usage !== null) process.stdout.write(usage);
else {
  // The long-running commands on the embedded database (no DATABASE_URL) start compiling PGlite's
  // WebAssembly now, on V8's background threads, while the CLI's code loads (src/storage/pglite-wasm.ts).
  if (!process.env.DATABASE_URL && ['serve', 'worker'].includes(argv[0])) {
    const wasm = await import('../dist/storage/pglite-wasm.js').catch(() => null);
    wasm?.useBaselineWasmCompiler();
    wasm?.pgliteWasmModule().catch(() => {}); // a failure shows again, with its cause, where the database opens
  }
  const { main } = await import(bundled() ? '../dist/cli/main.bundle.js' : '../dist/cli/main.js');
  const code = await main(argv);
  // A command that failed ends the process: whatever it opened before failing (a database pool, a
  // cluster's channel to its primary, timers) must not keep it running without its purpose. On
  // Linux stdout and stderr to pipes and files are written synchronously: nothing printed is lost.
  if (code !== 0) process.exit(code);
  process.exitCode = code;
}

/** The build's one-file CLI (scripts/build-server.mjs): the same code, started without loading ~1,100 modules one by one. */
function bundled() {
  return process.env.CERTFLEET_UNBUNDLED !== '1' && existsSync(new URL('../dist/cli/main.bundle.js', import.meta.url));
}

function savedUsage() {
  try {
    return readFileSync(new URL('../dist/cli/usage.txt', import.meta.url), 'utf8');
  } catch {
    return null;
  }
}
