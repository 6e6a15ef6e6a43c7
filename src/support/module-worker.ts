/**
 * A worker thread running a real module of this project (type-checked like the rest), beside the
 * module that starts it: `<name>.js` once compiled to dist/, started as it is; from the sources
 * (tests, `node --import tsx`) `<name>.ts`, which the thread loads through tsx's in-thread require
 * hook (Node 20 runs no loader hooks in worker threads): the two lines below are that loader, the
 * worker's code is the module. Used by the RSA key pool (pki/keygen-worker.ts) and the CRL thread
 * (support/crl-thread-worker.ts).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const TS_BOOTSTRAP = `const { workerData } = require('node:worker_threads');
require(workerData.tsxCjsApi).require(workerData.workerPath, workerData.workerPath);`;

/** The worker module `name` beside `importMetaUrl` (the caller's import.meta.url): `.ts` from the sources, `.js` from dist/. */
export function moduleWorkerUrl(name: string, importMetaUrl: string): URL {
  return new URL(`./${name}${importMetaUrl.endsWith('.ts') ? '.ts' : '.js'}`, importMetaUrl);
}

export function startModuleWorker(url: URL, options: Pick<WorkerOptions, 'name'> = {}): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const workerPath = fileURLToPath(url);
  const tsxCjsApi = createRequire(import.meta.url).resolve('tsx/cjs/api');
  return new Worker(TS_BOOTSTRAP, { ...options, eval: true, workerData: { tsxCjsApi, workerPath } });
}
