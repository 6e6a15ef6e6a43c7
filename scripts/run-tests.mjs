#!/usr/bin/env node
/**
 * `npm test`: the machine set-up (scripts/test-setup.mjs), then the static checks
 * (scripts/static-checks.mjs: tsc, tsc-index, typed eslint) and the vitest suite side by side.
 *
 * Why side by side: the suite's files wait on brokers, child processes, timers and Postgres for a
 * good part of their wall time, so even with one worker more than the cores the CPU has idle
 * moments, most of all at the end when the last long files run alone. The static checks (about a
 * minute of CPU, half a minute of wall time on their own) run in those moments at a lower priority
 * (nice 10) instead of in front of the suite, so the tests get the CPU whenever they want it.
 *
 * The static checks' output is held back and printed after vitest's, in one block, so the two
 * never interleave. The exit code is non-zero when either failed; both always run to the end (a
 * type error does not hide a failing test, nor the reverse). Arguments go to vitest (`npm test --
 * test/x.test.ts`); `CERTFLEET_TEST_SKIP_STATIC=1` runs the suite without the static checks.
 * The last line is the suite's "N passed, N failed, N skipped" (test/support/summary-reporter.ts),
 * repeated after the static checks' block; a failed static check counts as one failure there.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, setPriority, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NICE = 10;

/** The static checks in a child process whose output is kept for the end. */
function staticChecks() {
  if (process.env.CERTFLEET_TEST_SKIP_STATIC === '1') return Promise.resolve({ code: 0, output: 'static checks: skipped (CERTFLEET_TEST_SKIP_STATIC=1)\n' });
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'static-checks.mjs')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      setPriority(child.pid, NICE); // its own workers inherit it
    } catch {
      // not allowed here: it then runs at the same priority as the tests
    }
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (error) => resolve({ code: 1, output: `${output}static checks could not start: ${error.message}\n` }));
    child.on('close', (code, signal) => {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      resolve({ code: code ?? 1, output: `${output}${signal ? `static checks killed by ${signal}\n` : ''}static checks: done ${seconds} s after the start, beside vitest\n` });
    });
  });
}

let summaryDir = '';
let summaryFile = '';

function vitest() {
  summaryDir = mkdtempSync(join(tmpdir(), 'certfleet-test-'));
  summaryFile = join(summaryDir, 'summary.json');
  return new Promise((resolve) => {
    const bin = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
    const env = { ...process.env, CERTFLEET_TEST_SUMMARY_FILE: summaryFile };
    if (!env.CERTFLEET_TEST_WORKERS) {
      const busy = busyCores();
      if (busy !== null) env.CERTFLEET_TEST_WORKERS = String(workersFor(availableParallelism(), busy));
      console.log(`npm test: ${busy === null ? 'CPU use unknown' : `${busy.toFixed(2)} of ${availableParallelism()} cores busy`}: ${env.CERTFLEET_TEST_WORKERS ?? 'vitest.config.ts decides the'} vitest workers`);
    }
    const child = spawn(process.execPath, [bin, 'run', ...process.argv.slice(2)], { cwd: ROOT, stdio: 'inherit', env });
    child.on('error', (error) => {
      console.error(`vitest could not start: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

/**
 * How many cores other work keeps busy now: /proc/stat sampled over half a second (null where
 * there is none). vitest.config.ts picks one worker more than the two when the machine is idle;
 * it can only read the 1-minute load average, which right after `npm ci` (the build) or any
 * earlier burst still says busy for a minute, so this script decides from what the CPU does now,
 * before the static checks start, and hands the count over (CERTFLEET_TEST_WORKERS).
 */
function busyCores() {
  const sample = () => {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0); // idle + iowait
    return { idle, total: cpu.reduce((a, b) => a + b, 0) };
  };
  try {
    const before = sample();
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    const after = sample();
    const total = after.total - before.total;
    return total > 0 ? (1 - (after.idle - before.idle) / total) * availableParallelism() : null;
  } catch {
    return null;
  }
}

/** vitest's workers: one per core up to two, one more when other work keeps less than half the cores busy. */
export function workersFor(cores, busy) {
  const base = Math.max(1, Math.min(2, cores));
  return busy !== null && busy < cores / 2 && cores >= 2 ? base + 1 : base;
}

/**
 * What npm test prints last and its exit code, from vitest's exit code, the static checks' result
 * and the suite's counts (null when vitest ended before its reporter ran).
 */
export function outcome(suiteCode, checked, counts) {
  const lines = [];
  if (checked.code !== 0) lines.push('npm test: the static checks failed (above)');
  if (suiteCode !== 0) lines.push('npm test: the test suite failed (vitest, above)');
  if (counts) lines.push(`${counts.passed} passed, ${counts.failed + (checked.code !== 0 ? 1 : 0)} failed, ${counts.skipped} skipped`);
  return { lines, code: suiteCode !== 0 || checked.code !== 0 ? 1 : 0 };
}

async function main() {
  const setup = spawnSync(process.execPath, [join(ROOT, 'scripts', 'test-setup.mjs')], { cwd: ROOT, stdio: 'inherit' });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
  // vitest first: its configuration reads the load average to pick its worker count and time-outs,
  // which the static checks would otherwise raise before it looked.
  const suite = vitest();
  const checks = staticChecks();
  const [suiteCode, checked] = await Promise.all([suite, checks]);
  process.stdout.write(`\n${checked.output}`);
  let counts = null;
  try {
    counts = JSON.parse(readFileSync(summaryFile, 'utf8'));
  } catch {
    // vitest ended before its reporter ran (a crash, a configuration error): its exit code says so
  }
  rmSync(summaryDir, { recursive: true, force: true });
  const { lines, code } = outcome(suiteCode, checked, counts);
  console.log(`\n${lines.join('\n')}`);
  process.exit(code);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
