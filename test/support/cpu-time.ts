/**
 * Optional per-file CPU accounting (vitest setup file, active when CERTFLEET_TEST_CPU_LOG names a
 * file): appends one JSON line per test file with the CPU seconds (user + system) its worker
 * process used while the file ran, plus the tools it spawned and waited for (/proc/self/stat
 * cutime/cstime), and the process total so far (which includes the worker's own start when the
 * file was the first in its process). Load-independent, unlike wall time.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect } from 'vitest';

const log = process.env.CERTFLEET_TEST_CPU_LOG;

function cpuSeconds(): { own: number; children: number } {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // USER_HZ on Linux
  const at = (i: number) => Number(fields[i - 3]);
  return { own: (at(14) + at(15)) / tick, children: (at(16) + at(17)) / tick };
}

if (log) {
  let start = cpuSeconds();
  let wall = Date.now();
  beforeAll(() => {
    start = cpuSeconds();
    wall = Date.now();
  });
  afterAll(() => {
    const end = cpuSeconds();
    const file = expect.getState().testPath ?? '?';
    appendFileSync(
      log,
      `${JSON.stringify({
        file: file.replace(/^.*\/test\//, 'test/'),
        pid: process.pid,
        own: +(end.own - start.own).toFixed(2),
        children: +(end.children - start.children).toFixed(2),
        processTotal: +(end.own + end.children).toFixed(2),
        wallMs: Date.now() - wall,
        // With isolate: false a worker runs many files: what it holds after each (MB) shows a leak.
        rssMb: Math.round(process.memoryUsage().rss / 1e6),
      })}\n`,
    );
  });
}
