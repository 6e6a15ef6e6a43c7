import { writeFileSync } from 'node:fs';
import type { Reporter, TestCase, TestModule, TestSuite } from 'vitest/node';

/**
 * Prints the plain closing line CI reads: "N passed, N failed, N skipped". A file whose set-up
 * failed (a beforeAll that threw, an import error) leaves its tests unrun, which vitest reports as
 * skipped: those count as failed here, never as skipped, and a failed file with no test at all
 * counts as one failure, so the line never says "0 failed" for a red run.
 */
/** The test did not run because a hook or the file's set-up around it failed (errors on an enclosing suite or the file). */
function setUpFailed(test: TestCase): boolean {
  for (let parent: TestSuite | TestModule = test.parent; ; parent = parent.parent) {
    if (parent.errors().length > 0) return true;
    if (parent.type === 'module') return false;
  }
}

export function summarize(testModules: ReadonlyArray<TestModule>): { passed: number; failed: number; skipped: number } {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const module of testModules) {
    const moduleFailed = module.state() === 'failed';
    let seen = 0;
    for (const test of module.children.allTests()) {
      seen++;
      const state = test.result().state;
      if (state === 'passed') counts.passed++;
      else if (state === 'failed' || setUpFailed(test)) counts.failed++;
      else counts.skipped++; // skipped on purpose (it.skip, runIf), even in a file where another test failed
    }
    if (moduleFailed && seen === 0) counts.failed++;
  }
  return counts;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    const counts = summarize(testModules);
    console.log(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
    // scripts/run-tests.mjs (npm test) repeats the line after the static checks' output, last.
    const file = process.env.CERTFLEET_TEST_SUMMARY_FILE;
    if (file) writeFileSync(file, JSON.stringify(counts));
  }
}
