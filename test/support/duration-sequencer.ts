/**
 * The order vitest hands test files to its workers: longest first, from durations measured on this
 * machine and committed (test/support/file-durations.json), so a fresh clone, which has no vitest
 * cache, does not start by file size and end with one worker running a 45 s file while the other
 * idles. Each worker takes the next file when it finishes one, so longest-first keeps the last
 * files short. A file not in the list (new since the last measurement) is given the duration of
 * its size at the suite's mean milliseconds per byte. `node scripts/save-test-durations.mjs`
 * rewrites the list from vitest's cache after a whole run.
 */
import { readFileSync, statSync } from 'node:fs';
import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const DURATIONS_FILE = new URL('./file-durations.json', import.meta.url);

export function loadDurations(): Map<string, number> {
  const { durations } = JSON.parse(readFileSync(DURATIONS_FILE, 'utf8')) as { durations: Record<string, number> };
  return new Map(Object.entries(durations));
}

/** Files in longest-first order: measured durations, else size times the measured files' mean ms per byte. */
export function longestFirst(files: { key: string; size: number }[], durations: Map<string, number>): string[] {
  let ms = 0;
  let bytes = 0;
  for (const f of files) {
    const d = durations.get(f.key);
    if (d !== undefined) {
      ms += d;
      bytes += f.size;
    }
  }
  const msPerByte = bytes > 0 ? ms / bytes : 1;
  const estimate = (f: { key: string; size: number }) => durations.get(f.key) ?? f.size * msPerByte;
  return [...files].sort((a, b) => estimate(b) - estimate(a) || a.key.localeCompare(b.key)).map((f) => f.key);
}

export default class DurationSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const root = this.ctx.config.root;
    const byKey = new Map(files.map((spec) => [relative(root, spec.moduleId), spec]));
    const order = longestFirst(
      [...byKey.keys()].map((key) => ({ key, size: statSync(byKey.get(key)!.moduleId).size })),
      loadDurations(),
    );
    return order.map((key) => byKey.get(key)!);
  }
}
