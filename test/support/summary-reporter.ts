import type { Reporter, TestModule } from 'vitest/node';

/**
 * Prints the plain closing line CI reads: "N passed, N failed, N skipped". A file whose set-up
 * failed (a beforeAll that threw, an import error) leaves its tests unrun, which vitest reports as
 * skipped: those count as failed here, never as skipped, and a failed file with no test at all
 * counts as one failure, so the line never says "0 failed" for a red run.
 */
export function summarize(testModules: ReadonlyArray<TestModule>): { passed: number; failed: number; skipped: number } {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const module of testModules) {
    const moduleFailed = module.state() === 'failed';
    let seen = 0;
    for (const test of module.children.allTests()) {
      seen++;
      const state = test.result().state;
      if (state === 'passed') counts.passed++;
      else if (state === 'failed' || moduleFailed) counts.failed++;
      else counts.skipped++;
    }
    if (moduleFailed && seen === 0) counts.failed++;
  }
  return counts;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>) {
    const counts = summarize(testModules);
    console.log(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  }
}
