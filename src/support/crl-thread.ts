/**
 * One worker thread for the passes over a large CRL that need not run on the main thread: the
 * check of the CA's signature (a hash over the whole TBS, tens of MB at a million entries) and
 * part of its PEM encoding, both over memory shared with the main thread (SharedArrayBuffer:
 * nothing is copied, unlike libuv's thread pool, whose job copies its input first; see
 * crypto-pool.ts). The broker file's CRL is so verified on the second core while the main
 * thread encodes most of its PEM (publish-crl.ts, crl-file-sync.ts).
 *
 * Made on first use, referenced only while a job runs (a one-shot process exits as before). A
 * worker that fails (it exits, it errors) fails its jobs: the publication fails and is retried,
 * as any other failure; the next job makes a new worker. Only inputs in shared memory can go to
 * it: `shared(bytes)` says whether they are.
 */
import type { KeyObject } from 'node:crypto';
import type { Worker } from 'node:worker_threads';
import type { CrlThreadJob, CrlThreadReply } from './crl-thread-worker.ts';
import { moduleWorkerUrl, startModuleWorker } from './module-worker.ts';

/** Below this, a job's message round trip and the other core's wake-up cost more than they save. */
export const CRL_THREAD_MIN_BYTES = 8 * 1024 * 1024;

export const shared = (bytes: Uint8Array): boolean => typeof SharedArrayBuffer !== 'undefined' && bytes.buffer instanceof SharedArrayBuffer;

/** A Buffer of `size` bytes in shared memory (zero-filled), usable by the worker without a copy. */
export const sharedBuffer = (size: number): Buffer => Buffer.from(new SharedArrayBuffer(size));

const WORKER_URL = moduleWorkerUrl('crl-thread-worker', import.meta.url);

type Reply = CrlThreadReply;
/** A job as run() takes it: the id is run()'s to give. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type Job = WithoutId<CrlThreadJob>;

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, { resolve(reply: Reply): void; reject(error: Error): void }>();

function failAll(error: Error) {
  const jobs = [...pending.values()];
  pending.clear();
  worker = null;
  for (const job of jobs) job.reject(error);
}

function theWorker(): Worker {
  if (worker) return worker;
  const w = startModuleWorker(WORKER_URL, { name: 'certfleet-crl' });
  w.unref();
  w.on('message', (reply: Reply) => {
    const job = pending.get(reply.id);
    if (!job) return;
    pending.delete(reply.id);
    if (pending.size === 0) w.unref();
    if (reply.error !== undefined) job.reject(new Error(`CRL thread: ${reply.error}`));
    else job.resolve(reply);
  });
  w.on('error', (error) => {
    if (worker === w) failAll(error);
  });
  w.on('exit', (code) => {
    if (worker === w) failAll(new Error(`CRL thread exited (${code})`));
  });
  worker = w;
  return w;
}

function run(job: Job): Promise<Reply> {
  const w = theWorker();
  const id = nextId++;
  return new Promise<Reply>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ ...job, id } as CrlThreadJob);
  });
}

/** crypto.verify(hash, data, key) in the worker; `data` must be in shared memory. */
export async function verifyInCrlThread(hash: string, data: Uint8Array, key: KeyObject, signature: Uint8Array): Promise<boolean> {
  if (!shared(data)) throw new Error('verifyInCrlThread: the data is not in shared memory');
  const reply = await run({ op: 'verify', hash, buffer: data.buffer as SharedArrayBuffer, dataStart: data.byteOffset, dataEnd: data.byteOffset + data.length, key, signature: Buffer.from(signature) });
  return reply.ok === true;
}

/**
 * PEM lines (64 characters and '\n' per 48 bytes) of `der`, whose length is a multiple of 48,
 * written into `out` from `outStart` by the worker; both in shared memory. Resolves with the end offset.
 */
export async function pemLinesInCrlThread(der: Uint8Array, out: Uint8Array, outStart: number): Promise<number> {
  if (!shared(der) || !shared(out)) throw new Error('pemLinesInCrlThread: the buffers are not in shared memory');
  if (outStart + (der.length / 48) * 65 > out.length) throw new RangeError('PEM output buffer too small');
  const reply = await run({ op: 'pem', der: der.buffer as SharedArrayBuffer, derStart: der.byteOffset, derEnd: der.byteOffset + der.length, out: out.buffer as SharedArrayBuffer, outStart: out.byteOffset + outStart });
  return (reply.end as number) - out.byteOffset;
}

/** Stops the worker (tests). */
export async function stopCrlThread(): Promise<void> {
  const w = worker;
  worker = null;
  if (w) await w.terminate();
}
