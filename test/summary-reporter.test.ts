/**
 * The closing line CI reads: a file whose beforeAll threw must not read "0 failed". Driven
 * through vitest itself (createVitest on a throw-away test folder), not a hand-made TestModule.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startVitest } from 'vitest/node';
import { summarize } from './support/summary-reporter.ts';

const dir = mkdtempSync(join(tmpdir(), 'certfleet-summary-'));

it('counts the tests of a file whose set-up failed as failed, a clean file as passed, it.skip as skipped (also beside a failed test)', async () => {
  writeFileSync(join(dir, 'hook.test.ts'), "import { beforeAll, it } from 'vitest';\nbeforeAll(() => { throw new Error('set-up broke'); });\nit('a', () => {});\nit('b', () => {});\n");
  writeFileSync(join(dir, 'fine.test.ts'), "import { it } from 'vitest';\nit('c', () => {});\nit.skip('d', () => {});\n");
  writeFileSync(join(dir, 'import.test.ts'), "throw new Error('import broke');\n");
  writeFileSync(join(dir, 'mixed.test.ts'), "import { it } from 'vitest';\nit('e', () => { throw new Error('e broke'); });\nit.skip('f', () => {});\nit('g', () => {});\n");
  const vitest = await startVitest('test', [], { root: dir, watch: false, reporters: [{}], config: false, globalSetup: [], setupFiles: [], include: ['*.test.ts'] });
  try {
    const counts = summarize(vitest.state.getTestModules());
    // hook.test.ts: a and b unrun (failed); fine: c passed, d skipped; import.test.ts: one failure; mixed.test.ts: e failed, f skipped on purpose, g passed.
    expect(counts).toEqual({ passed: 2, failed: 4, skipped: 2 });
  } finally {
    await vitest.close();
    process.exitCode = 0;
  }
});
