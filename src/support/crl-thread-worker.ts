/**
 * The CRL thread's worker (support/crl-thread.ts): a signature check over, and PEM lines of, a
 * CRL in memory shared with the main thread (nothing copied). A real module, type-checked like the
 * rest; the PEM lines are src/pki/pem.ts's own (`pemLines`), so the two halves of a split PEM
 * come from one encoder.
 */
import { verify, type KeyObject } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { pemLines } from '../pki/pem.ts';

export type CrlThreadJob =
  | { id: number; op: 'verify'; hash: string; buffer: SharedArrayBuffer; dataStart: number; dataEnd: number; key: KeyObject; signature: Uint8Array }
  | { id: number; op: 'pem'; der: SharedArrayBuffer; derStart: number; derEnd: number; out: SharedArrayBuffer; outStart: number };

export type CrlThreadReply = { id: number; ok?: boolean; end?: number; error?: string };

function answer(job: CrlThreadJob): CrlThreadReply {
  if (job.op === 'verify') {
    const data = new Uint8Array(job.buffer, job.dataStart, job.dataEnd - job.dataStart);
    let ok = false;
    try {
      ok = verify(job.hash, data, { key: job.key, dsaEncoding: 'der' }, job.signature);
    } catch {
      ok = false; // a malformed signature is a failed check, as in verifyCrl
    }
    return { id: job.id, ok };
  }
  const der = new Uint8Array(job.der, job.derStart, job.derEnd - job.derStart);
  if (der.length % 48 !== 0) throw new Error('PEM lines of whole 48-byte groups only');
  return { id: job.id, ok: true, end: pemLines(der, 0, der.length, Buffer.from(job.out), job.outStart) };
}

parentPort?.on('message', (job: CrlThreadJob) => {
  let reply: CrlThreadReply;
  try {
    reply = answer(job);
  } catch (error) {
    reply = { id: job.id, error: error instanceof Error ? error.message : String(error) };
  }
  parentPort?.postMessage(reply);
});
