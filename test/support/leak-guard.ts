/**
 * Vitest setup file (runs for every test file): a Mosquitto the file started and left running
 * (a beforeAll that failed before its afterAll could stop it, a forgotten stop) is stopped when the
 * file ends, and named on stderr, so that it never holds a port or a core in the next files of the
 * same worker process (vitest `isolate: false`). The file's own afterAll hooks run first.
 */
import { afterAll, beforeAll, expect } from 'vitest';
import { runningBrokers } from './mosquitto.ts';

let before = new Set(runningBrokers.keys());
beforeAll(() => {
  before = new Set(runningBrokers.keys());
});
afterAll(async () => {
  const left = [...runningBrokers].filter(([child]) => !before.has(child));
  if (left.length === 0) return;
  const file = expect.getState().testPath ?? 'a test file';
  console.warn(`leak-guard: ${file} left ${left.length} Mosquitto ${left.length === 1 ? 'broker' : 'brokers'} running (${left.map(([, b]) => b.configFile).join(', ')}): stopped`);
  await Promise.all(left.map(([, b]) => b.stop()));
});
