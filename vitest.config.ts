import { availableParallelism, loadavg } from 'node:os';
import { defineConfig } from 'vitest/config';
import DurationSequencer from './test/support/duration-sequencer.ts';

/**
 * Time-outs stretch with how busy the machine is when the run starts (load per core, at least 1,
 * at most 6): they are upper bounds for waits that end on a signal, so a loaded machine (load 10 to
 * 40 on 2 cores) gets longer ones, an idle one keeps them short enough to report a hang quickly.
 * Tests with their own time-out scale it with `scaled()` from test/support/timeouts.ts.
 */
const cores = availableParallelism();
/**
 * One worker more than the two when the machine is idle at the start (1-minute load below half
 * the cores): a test file waits on brokers, child processes, timers and Postgres for about a third
 * of its wall time (measured: the 24 longest files used 236 s of CPU for 365 s of wall time in an
 * idle run), so two workers on two cores leave a core idle that long; a third fills it. 50
 * mid-sized files at load 9 to 11 (other work on the machine): 232.6 s with two workers, 211.6 s
 * with three, all passing. On a busy machine the extra worker only adds contention: two.
 */
const idle = loadavg()[0] < cores / 2;
// CERTFLEET_TEST_WORKERS=N sets the number: `npm test` (scripts/run-tests.mjs) sets it from what the
// CPU does at its start, since the 1-minute load still counts the build `npm ci` just ran.
const workers = Number(process.env.CERTFLEET_TEST_WORKERS) || Math.max(1, Math.min(2, cores)) + (idle && cores >= 2 ? 1 : 0);
// With more workers than cores the run itself keeps the cores busy: time-outs stretch at least as
// for that load (1.5 with 3 workers on 2 cores).
const loadScale = Math.min(6, Math.max(1, loadavg()[0] / cores, workers / cores));
process.env.CERTFLEET_TEST_TIMEOUT_SCALE ??= loadScale.toFixed(2);
const scale = Number(process.env.CERTFLEET_TEST_TIMEOUT_SCALE);
// The CLI processes the tests spawn (test/support/certfleet-source.js) compile PGlite's
// WebAssembly with V8's baseline compiler only: seconds-long processes, about 2.5 s of CPU less
// per start on PGlite. The test workers themselves keep V8's defaults (they run for minutes).
process.env.CERTFLEET_TEST_LIFTOFF_ONLY ??= '1';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['./test/support/global-setup.ts'],
    setupFiles: ['./test/support/cpu-time.ts', './test/support/leak-guard.ts'],
    testTimeout: Math.round(60_000 * scale),
    hookTimeout: Math.round(120_000 * scale),
    pool: 'forks',
    // One process per worker runs file after file (not one process per file): each file no longer
    // pays a process start and a fresh import of the whole service (PGlite, Fastify, the PKI code)
    // and its first, unoptimised runs. Measured on 8 service files, load ~45 on 2 cores: 58.1 ->
    // 43.7 CPU-s, about 1.8 CPU-s per file. Test files must therefore close what they start (it
    // would keep running into the next file) and restore process.env; setup files still run per
    // file. CERTFLEET_TEST_ISOLATE=1 gives every file its own process again, to tell whether a
    // failure comes from an earlier file in the same worker.
    isolate: process.env.CERTFLEET_TEST_ISOLATE === '1',
    fileParallelism: true,
    // One file per core (each file already runs child processes: Mosquitto, openssl, the CLI; and
    // a PGlite of ~700 MB), one more on an idle machine (see `workers` above).
    maxWorkers: workers,
    // Longest files first, from committed measurements (test/support/duration-sequencer.ts): a
    // fresh clone has no vitest cache, and ordering by size left one worker finishing a long file alone.
    sequence: { sequencer: DurationSequencer },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
