/**
 * RSA key generation in its own bounded pool of worker threads, apart from signing and
 * file I/O (libuv's thread pool): a tenant that floods RSA-2048 generation queues behind
 * its own requests, not in front of other tenants' issuance, signing or the CRL file write.
 * Queued jobs are served round-robin across tenants. EC P-256 generation takes well under
 * a millisecond and stays inline.
 */
import { Worker } from 'node:worker_threads';

/** CommonJS, evaluated in the worker: no TypeScript loader needed (tsx or dist alike). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { generateKeyPairSync } = require('node:crypto');
parentPort.on('message', ({ id, bits }) => {
  try {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', {
      modulusLength: bits,
      publicExponent: 0x10001,
      publicKeyEncoding: { type: 'spki', format: 'der' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    parentPort.postMessage({ id, spkiDer: publicKey, privateKeyPem: privateKey });
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.message || e) });
  }
});
`;

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
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    workers++;
    worker.on('message', (msg: { id: number; spkiDer?: Uint8Array; privateKeyPem?: string; error?: string }) => {
      const job = running.get(worker);
      running.delete(worker);
      if (job && job.id === msg.id) {
        if (msg.error || !msg.spkiDer || !msg.privateKeyPem) job.reject(new Error(`RSA key generation failed: ${msg.error ?? 'no key'}`));
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
      worker.postMessage({ id: job.id, bits: job.bits });
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
