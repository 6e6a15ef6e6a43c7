#!/usr/bin/env node
// Runs the compiled JavaScript in dist/ (built by `npm run build`, run by `npm install` through `prepare`).
// `certfleet --help` (alone) prints the usage text the build saved beside the compiled CLI
// (dist/cli/usage.txt, written from the command specs by scripts/build-server.mjs) without loading
// the CLI at all; without that file, or with anything else, the CLI runs as usual.
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const usage = argv.length === 1 && ['--help', '-h', 'help'].includes(argv[0]) ? savedUsage() : null;
if (usage !== null) process.stdout.write(usage);
else {
  const { main } = await import('../dist/cli/main.js');
  process.exitCode = await main(argv);
}

function savedUsage() {
  try {
    return readFileSync(new URL('../dist/cli/usage.txt', import.meta.url), 'utf8');
  } catch {
    return null;
  }
}
