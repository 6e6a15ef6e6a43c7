/**
 * RSA key generation in its own bounded pool of worker threads, apart from signing and
 * file I/O (libuv's thread pool): a tenant that floods RSA-2048 generation queues behind
 * its own requests, not in front of other tenants' issuance, signing or the CRL file write.
 * Queued jobs are served round-robin across tenants. EC P-256 generation takes well under
 * a millisecond and stays inline.
 */
import type { Worker } from 'node:worker_threads';
import type { KeygenReply, KeygenRequest } from './keygen-worker.ts';
import { moduleWorkerUrl, startModuleWorker } from '../support/module-worker.ts';

/** The worker module beside this one (support/module-worker.ts: keygen-worker.js in dist/, .ts from the sources). */
const WORKER_URL = moduleWorkerUrl('keygen-worker', import.meta.url);
const startWorker = (): Worker => startModuleWorker(WORKER_URL);

export interface RsaKeyPair {
  spkiDer: Buffer;
  privateKeyPem: string;
}

interface Job {
  id: number;
  bits: number;
  resolve(key: RsaKeyPair): void;
  reject(error: Error): void;
}

export interface KeygenPool {
  generateRsa(bits: number, tenantId: string): Promise<RsaKeyPair>;
  /** Jobs waiting or running (for tests and metrics). */
  readonly pending: number;
  close(): Promise<void>;
}

export function createKeygenPool(size: number): KeygenPool {
  if (!Number.isInteger(size) || size < 1) throw new RangeError('the key generation pool needs at least one worker');
  const queues = new Map<string, Job[]>(); // insertion order = round-robin order
  const idle: Worker[] = [];
  const running = new Map<Worker, Job>();
  let workers = 0;
  let nextId = 1;
  let waiting = 0;
  let closed = false;

  function spawnWorker(): Worker {
    const worker = startWorker();
    worker.unref();
    workers++;
    worker.on('message', (msg: KeygenReply) => {
      const job = running.get(worker);
      running.delete(worker);
      if (job && job.id === msg.id) {
        if ('error' in msg) job.reject(new Error(`RSA key generation failed: ${msg.error}`));
        else job.resolve({ spkiDer: Buffer.from(msg.spkiDer), privateKeyPem: msg.privateKeyPem });
      }
      idle.push(worker);
      dispatch();
    });
    worker.on('error', (error) => {
      const job = running.get(worker);
      running.delete(worker);
      workers--;
      job?.reject(error);
      if (!closed) dispatch();
    });
    return worker;
  }

  function nextJob(): Job | undefined {
    for (const [tenant, jobs] of queues) {
      const job = jobs.shift();
      queues.delete(tenant);
      // Back of the round-robin order; dropped when empty.
      if (jobs.length) queues.set(tenant, jobs);
      if (job) {
        waiting--;
        return job;
      }
    }
    return undefined;
  }

  function dispatch() {
    while (waiting > 0 && !closed) {
      const worker = idle.pop() ?? (workers < size ? spawnWorker() : undefined);
      if (!worker) return;
      const job = nextJob()!;
      running.set(worker, job);
      const request: KeygenRequest = { id: job.id, bits: job.bits };
      worker.postMessage(request);
    }
  }

  return {
    generateRsa(bits, tenantId) {
      if (closed) return Promise.reject(new Error('the key generation pool is closed'));
      return new Promise<RsaKeyPair>((resolve, reject) => {
        const jobs = queues.get(tenantId) ?? [];
        jobs.push({ id: nextId++, bits, resolve, reject });
        queues.set(tenantId, jobs);
        waiting++;
        dispatch();
      });
    },
    get pending() {
      return waiting + running.size;
    },
    async close() {
      closed = true;
      for (const jobs of queues.values()) for (const job of jobs) job.reject(new Error('the key generation pool was closed'));
      queues.clear();
      waiting = 0;
      for (const job of running.values()) job.reject(new Error('the key generation pool was closed'));
      const all = [...idle, ...running.keys()];
      running.clear();
      idle.length = 0;
      await Promise.all(all.map((w) => w.terminate()));
    },
  };
}
