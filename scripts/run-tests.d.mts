/** Types of scripts/run-tests.mjs (npm test), for the tests that import it. */
export function outcome(
  suiteCode: number,
  checked: { code: number },
  counts: { passed: number; failed: number; skipped: number } | null,
): { lines: string[]; code: number };
export function workersFor(cores: number, busy: number | null): number;
