/**
 * `npm run bench`: every benchmark in sequence, on real Postgres (TEST_DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres). Each prints its own section with ratios
 * against a peer measured in the same run. Not part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { runCrlPublishBench } from './crl-publish.bench.ts';
import { runExpiryTickBench } from './expiry-tick.bench.ts';
import { runIssuanceBench } from './issuance.bench.ts';
import { runTenantFairnessBench } from './tenant-fairness.bench.ts';

/** A bench that runs on import (crl-build.bench.ts), in its own process. */
async function script(file: string) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(file, import.meta.url).pathname], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${file} exited with ${r.status}`);
}

const benches: [string, () => Promise<unknown>][] = [
  ['issuance', () => runIssuanceBench()],
  ['tenant fairness', () => runTenantFairnessBench()],
  ['expiry tick', () => runExpiryTickBench()],
  ['crl build', () => script('./crl-build.bench.ts')],
  ['crl lint', () => script('./crl-lint.bench.ts')],
  ['crl publish', () => runCrlPublishBench()],
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
