/**
 * The order the suite's files start in (test/support/duration-sequencer.ts): longest first from the
 * committed measurements, a file missing from them placed by its size, and no stale entry.
 */
import { readdirSync } from 'node:fs';
import { expect, it } from 'vitest';
import { loadDurations, longestFirst } from './support/duration-sequencer.ts';

it('orders measured files longest first and places an unmeasured file by its size at the measured ms per byte', () => {
  const durations = new Map([
    ['test/a.test.ts', 1_000],
    ['test/b.test.ts', 30_000],
    ['test/c.test.ts', 5_000],
  ]);
  // 36,000 ms over 36,000 bytes: 1 ms per byte, so the new 10,000-byte file counts as 10 s.
  const files = [
    { key: 'test/a.test.ts', size: 12_000 },
    { key: 'test/new.test.ts', size: 10_000 },
    { key: 'test/b.test.ts', size: 12_000 },
    { key: 'test/c.test.ts', size: 12_000 },
  ];
  expect(longestFirst(files, durations)).toEqual(['test/b.test.ts', 'test/new.test.ts', 'test/c.test.ts', 'test/a.test.ts']);
  expect(longestFirst([{ key: 'test/x.test.ts', size: 5 }, { key: 'test/y.test.ts', size: 9 }], new Map())).toEqual(['test/y.test.ts', 'test/x.test.ts']);
});

it('lists no file that is gone (a renamed long file would otherwise start among the short ones)', () => {
  const files = readdirSync(new URL('.', import.meta.url)).filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  const measured = [...loadDurations().keys()];
  // A new file is placed by its size meanwhile; `node scripts/save-test-durations.mjs` after a whole run measures it.
  expect(measured.filter((f) => !files.includes(f))).toEqual([]);
});
