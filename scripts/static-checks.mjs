#!/usr/bin/env node
/**
 * The static checks `npm test` runs before vitest, side by side (one process each, so on two
 * cores they take about as long as the slowest one): the type check of the whole project, the
 * stricter one of the folders held to `noUncheckedIndexedAccess` (tsconfig.index-checked.json),
 * and typescript-eslint with type information over src/ and test/ (eslint.config.js). Each
 * one's time is printed; the exit code is non-zero when any of them fails, with its output.
 *
 * `node scripts/static-checks.mjs lint` runs one of them by name (tsc, tsc-index, lint).
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(ROOT, 'node_modules', '.bin', name);

const CHECKS = {
  tsc: [bin('tsc'), ['--noEmit', '-p', 'tsconfig.json']],
  'tsc-index': [bin('tsc'), ['--noEmit', '-p', 'tsconfig.index-checked.json']],
  lint: [bin('eslint'), ['--max-warnings', '0', 'src', 'test']],
};

function run(name) {
  const [command, args] = CHECKS[name];
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (error) => resolve({ name, code: 1, output: `${output}${error.message}\n`, seconds: 0 }));
    child.on('close', (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), output, seconds: (performance.now() - started) / 1000 }));
  });
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((n) => !(n in CHECKS));
if (unknown.length > 0) {
  console.error(`static-checks: unknown check ${unknown.join(', ')} (known: ${Object.keys(CHECKS).join(', ')})`);
  process.exit(2);
}
const results = await Promise.all((wanted.length > 0 ? wanted : Object.keys(CHECKS)).map(run));
let failed = false;
for (const r of results) {
  if (r.code !== 0) {
    failed = true;
    process.stderr.write(`\n${r.name} failed:\n${r.output}`);
  }
}
console.log(`static checks: ${results.map((r) => `${r.name} ${r.code === 0 ? 'ok' : 'FAILED'} ${r.seconds.toFixed(1)} s`).join(', ')}`);
process.exit(failed ? 1 : 0);
