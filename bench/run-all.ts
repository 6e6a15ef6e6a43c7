/**
 * `npm run bench`: every benchmark in sequence, on real Postgres (TEST_DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres). Each prints its own section with ratios
 * against a peer measured in the same run. Not part of `npm test`.
 */
import { runExpiryTickBench } from './expiry-tick.bench.ts';
import { runIssuanceBench } from './issuance.bench.ts';

const benches: [string, () => Promise<unknown>][] = [
  ['issuance', () => runIssuanceBench()],
  ['expiry tick', () => runExpiryTickBench()],
];

let failed = 0;
for (const [name, run] of benches) {
  try {
    await run();
  } catch (e) {
    failed++;
    console.error(`bench ${name} failed: ${(e as Error).stack ?? e}`);
  }
}
process.exitCode = failed ? 1 : 0;
