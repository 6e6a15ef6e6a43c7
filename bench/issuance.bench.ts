/**
 * Issuance over HTTP on real Postgres, for ec-p256 and rsa-2048, beside the raw Node
 * key-generation rate measured in the same run. Prints certificates/s, p50/p99 latency
 * and the server's event-loop lag (p99, from its own /metrics).
 */
import { generateKeyPair } from 'node:crypto';
import http from 'node:http';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cfsslNewcertBody, hasCfssl, legacyKeyFile, opensslIssueRate, pythonIssueRate, pythonWithCryptography, startCfsslServe } from './support/peers.ts';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, closedLoop as burst, fmt, percentile, startServer } from './support/server.ts';

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

const certfleetRequest = (base: string, token: string, keyType: string) => (i: number) => ({
  method: 'POST' as const,
  url: `${base}/api/v1/customer/devices/BENCH-${i % DEVICES}/certificates/generate`,
  headers: { authorization: `Bearer ${token}` },
  body: JSON.stringify({ key_type: keyType, validity_days: 30 }),
});

export async function runIssuanceBench(options: { seconds?: number } = {}) {
  const seconds = options.seconds ?? scaled(10, 3);
  const db = await benchDatabase();
  const server = await startServer('api', db.url, { ISSUANCE_RATE_PER_MINUTE: '0' }); // capacity, not the per-tenant limit
  const ca = { certPath: join(server.dataDir, 'ca', 'device-ca.crt'), keyPath: join(server.dataDir, 'ca', 'device-ca.key') };
  const python = pythonWithCryptography();
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
    const rawEc = await rawKeyRate('ec', Math.min(3, seconds), 8);
    const rawRsa = await rawKeyRate('rsa', Math.min(8, seconds), 8);
    console.log(`raw Node key generation (same run): ec-p256 ${fmt(rawEc, 0)} keys/s, rsa-2048 ${fmt(rawRsa)} keys/s`);
    await burst(certfleetRequest(server.base, token, 'ec-p256'), 201, 2, 16); // warm-up
    const rows: (string | number | null)[][] = [];
    for (const [keyType, concurrency, raw] of [['ec-p256', 32, rawEc], ['rsa-2048', 8, rawRsa]] as const) {
      await eventLoopP99(server.base); // resets the server's lag histogram
      const ours = await burst(certfleetRequest(server.base, token, keyType), 201, seconds, concurrency);
      const lag = await eventLoopP99(server.base);
      const openssl = await opensslIssueRate(ca, keyType, seconds, availableParallelism());
      const py = python ? pythonIssueRate(python, ca, keyType, seconds) : NaN;
      let cfssl: Awaited<ReturnType<typeof burst>> | null = null;
      if (hasCfssl()) {
        const serve = await startCfsslServe({ certPath: ca.certPath, keyPath: legacyKeyFile(ca.keyPath, 'ec') }, 20_000 + Math.floor(Math.random() * 20_000));
        try {
          cfssl = await burst((i) => ({ method: 'POST', url: `${serve.base}/api/v1/cfssl/newcert`, headers: {}, body: cfsslNewcertBody(keyType, i) }), 200, seconds, concurrency);
        } finally {
          await serve.stop();
        }
      }
      console.log(
        `${keyType}: certfleet ${fmt(ours.rate)}/s (p50 ${fmt(ours.p50)} ms, p99 ${fmt(ours.p99)} ms, lag p99 ${fmt(lag)} ms, ${ours.errors} errors); ` +
          `openssl ${fmt(openssl)}/s; python ${fmt(py)}/s; cfssl ${cfssl ? `${fmt(cfssl.rate)}/s` : 'not installed'}; raw keygen ${fmt(raw)}/s`,
      );
      rows.push([
        keyType,
        round(ours.rate),
        round(ours.p50),
        round(ours.p99),
        round(lag),
        ours.errors,
        round(openssl),
        ratio(ours.rate, openssl),
        python ? round(py) : 'no python3 cryptography',
        python ? ratio(ours.rate, py) : '-',
        cfssl ? round(cfssl.rate) : 'cfssl not installed',
        cfssl ? ratio(ours.rate, cfssl.rate) : '-',
        round(raw),
      ]);
    }
    emitTable({
      id: 'issuance',
      title: 'Issuance per key type over HTTP',
      description:
        `certfleet: \`certfleet api\` on Postgres, a keep-alive client (32 requests in flight for EC, 8 for RSA) for ${seconds} s per key type; ` +
        'each certificate is a new key generated server-side, signed, stored with its audit event. openssl: `openssl req -x509 -new -newkey … -CA` ' +
        'per certificate, one process per core. python: the seed\'s approach, `cryptography` in one process (key + certificate in a loop, no HTTP, no database). ' +
        'cfssl: `cfssl serve`, `POST /api/v1/cfssl/newcert` (key generated server-side, no database) with the same client. Same EC P-256 CA for all.',
      columns: ['key type', 'certfleet certs/s', 'p50 ms', 'p99 ms', 'event-loop lag p99 ms', 'errors', 'openssl certs/s', 'certfleet / openssl', 'python certs/s', 'certfleet / python', 'cfssl certs/s', 'certfleet / cfssl', 'raw Node keygen keys/s'],
      rows,
      notes: ['Ratios here are certfleet / peer: above 1x certfleet issues more certificates per second.'],
    });
    return rows;
  } finally {
    await server.stop();
    await db.drop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runIssuanceBench({ seconds: process.env.BENCH_SECONDS ? Number(process.env.BENCH_SECONDS) : undefined });
}
