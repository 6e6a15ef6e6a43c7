#!/usr/bin/env node
// Rewrites test/support/file-durations.json (the longest-first order of test/support/duration-sequencer.ts)
// from vitest's cache of the last run: run the whole suite (`npx vitest run`) first, on an idle machine.
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const cacheRoot = 'node_modules/.vite/vitest';
const dirs = existsSync(cacheRoot) ? readdirSync(cacheRoot).map((d) => join(cacheRoot, d, 'results.json')).filter(existsSync) : [];
if (dirs.length === 0) {
  console.error(`no ${cacheRoot}/*/results.json: run the whole suite first`);
  process.exit(1);
}
const { results } = JSON.parse(readFileSync(dirs[0], 'utf8'));
const durations = Object.fromEntries(
  results
    .map(([key, r]) => [key.replace(/^[^:]*:/, ''), Math.round(r.duration)])
    .filter(([key]) => existsSync(key))
    .sort((a, b) => b[1] - a[1]),
);
const measured = process.argv[2] ?? `${new Date().toISOString().slice(0, 16)} UTC`;
writeFileSync('test/support/file-durations.json', `${JSON.stringify({ measured, durations }, null, 1)}\n`);
console.log(`${Object.keys(durations).length} files written to test/support/file-durations.json`);
