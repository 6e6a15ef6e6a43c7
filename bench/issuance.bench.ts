/**
 * Issuance over HTTP on real Postgres, for ec-p256 and rsa-2048, beside the raw Node
 * key-generation rate measured in the same run. Prints certificates/s, p50/p99 latency
 * and the server's event-loop lag (p99, from its own /metrics).
 */
import { generateKeyPair } from 'node:crypto';
import http from 'node:http';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { benchDatabase, fmt, percentile, startServer } from './support/server.ts';

const gen = promisify(generateKeyPair);
const DEVICES = 100;

async function rawKeyRate(kind: 'ec' | 'rsa', seconds: number, concurrency: number): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let n = 0;
  const worker = async () => {
    while (Date.now() < until) {
      if (kind === 'ec') await gen('ec', { namedCurve: 'prime256v1' });
      else await gen('rsa', { modulusLength: 2048 });
      n++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return n / ((performance.now() - start) / 1000);
}

async function eventLoopP99(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : NaN;
}

/** node:http with keep-alive: a much lighter client than fetch, so the server gets the CPU. */
function post(agent: http.Agent, url: string, token: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function burst(base: string, token: string, keyType: string, seconds: number, concurrency: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  let i = 0;
  await eventLoopP99(base); // resets the server's lag histogram
  const until = Date.now() + seconds * 1000;
  const start = performance.now();
  const worker = async () => {
    while (Date.now() < until) {
      const device = `BENCH-${i++ % DEVICES}`;
      const t0 = performance.now();
      const status = await post(agent, `${base}/api/v1/customer/devices/${device}/certificates/generate`, token, JSON.stringify({ key_type: keyType, validity_days: 30 }));
      if (status === 201) latencies.push(performance.now() - t0);
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  const lag = await eventLoopP99(base);
  latencies.sort((a, b) => a - b);
  return { rate: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), lag, count: latencies.length, errors };
}

export async function runIssuanceBench(options: { seconds?: number } = {}) {
  const seconds = options.seconds ?? 10;
  const db = await benchDatabase();
  const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0' }); // capacity, not the per-tenant limit
  try {
    const token = server.token('bench');
    for (let d = 0; d < DEVICES; d++) {
      await fetch(`${server.base}/api/v1/customer/devices`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ device_id: `BENCH-${d}` }),
      });
    }
    console.log(`\n## Issuance over HTTP (real Postgres, ${availableParallelism()} cores, ${seconds} s per burst)`);
    const rawEc = await rawKeyRate('ec', 3, 8);
    const rawRsa = await rawKeyRate('rsa', 8, 8);
    console.log(`raw Node key generation (same run): ec-p256 ${fmt(rawEc, 0)} keys/s, rsa-2048 ${fmt(rawRsa)} keys/s`);
    await burst(server.base, token, 'ec-p256', 2, 16); // warm-up
    const ec = await burst(server.base, token, 'ec-p256', seconds, 32);
    const rsa = await burst(server.base, token, 'rsa-2048', seconds, 8);
    const rows = [
      ['ec-p256', ec, rawEc],
      ['rsa-2048', rsa, rawRsa],
    ] as const;
    console.log('| key type | certificates/s | p50 ms | p99 ms | event-loop p99 lag ms | vs raw keygen | errors |');
    console.log('|---|---|---|---|---|---|---|');
    for (const [name, r, raw] of rows) {
      console.log(`| ${name} | ${fmt(r.rate)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.lag)} | ${fmt(r.rate / raw, 2)}x | ${r.errors} |`);
    }
    return { ec, rsa, rawEc, rawRsa };
  } finally {
    await server.stop();
    await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIssuanceBench({ seconds: Number(process.env.BENCH_SECONDS ?? 10) });
}
