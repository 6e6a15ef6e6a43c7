/**
 * Fairness between tenants (issue 10.6), not a test: while tenant "flood" keeps 32 RSA-2048
 * generate requests in flight, tenant "calm" issues EC P-256 certificates one after another
 * and revokes one; we time calm's issuances (p50/p99) and the revocation until the CRL file
 * lists it. Run twice in the same process on real Postgres: the key generation pool
 * (KEYGEN_WORKERS default) against the unbounded peer (KEYGEN_WORKERS=0: RSA in libuv's
 * thread pool, as before), and print both with the ratios.
 *
 *   node --import tsx bench/tenant-fairness.bench.ts
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { emitTable, ratio, round, scaled } from './support/results.ts';
import { benchDatabase, fmt, percentile, startServer } from './support/server.ts';

const FLOOD = 32;
const CALM_ISSUANCES = scaled(10, 4); // unbounded, each takes tens of seconds

interface Figures {
  p50: number;
  p99: number;
  crlMs: number;
  floodDone: number;
}

async function scenario(keygenWorkers: string): Promise<Figures> {
  const db = await benchDatabase();
  const server = await startServer('serve', db.url, { ISSUANCE_RATE_PER_MINUTE: '0', KEYGEN_WORKERS: keygenWorkers, LOG_LEVEL: 'warn' });
  try {
    const tokens = { flood: server.token('flood'), calm: server.token('calm') };
    const call = async (tenant: 'flood' | 'calm', path: string, body: unknown) => {
      const res = await fetch(`${server.base}/api/v1/customer${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens[tenant]}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as { certificate?: { id: number; serial_number: string } } };
    };
    for (const tenant of ['flood', 'calm'] as const) await call(tenant, '/devices', { device_id: 'D1' });

    let stop = false;
    let floodDone = 0;
    const flooder = async () => {
      while (!stop) {
        await call('flood', '/devices/D1/certificates/generate', { key_type: 'rsa-2048' });
        floodDone++;
      }
    };
    const flood = Array.from({ length: FLOOD }, flooder);
    await new Promise((r) => setTimeout(r, 500)); // the flood is queued up

    const latencies: number[] = [];
    const ids: { id: number; serial: string }[] = [];
    for (let i = 0; i < CALM_ISSUANCES; i++) {
      const t0 = performance.now();
      const res = await call('calm', '/devices/D1/certificates/generate', { key_type: 'ec-p256', validity_days: 30 });
      latencies.push(performance.now() - t0);
      if (res.status !== 201) throw new Error(`calm issuance answered ${res.status}`);
      ids.push({ id: res.json.certificate!.id, serial: res.json.certificate!.serial_number });
    }
    const crlPath = join(server.dataDir, 'pki', 'device-crl.pem');
    const serial = Buffer.from(ids[0].serial.padStart(40, '0'), 'hex');
    const t0 = performance.now();
    const revoked = await call('calm', `/certificates/${ids[0].id}/revoke`, { reason: 'keyCompromise' });
    if (revoked.status !== 200) throw new Error(`revoke answered ${revoked.status}`);
    for (;;) {
      const pem = await readFile(crlPath, 'utf8').catch(() => '');
      if (Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').includes(serial)) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const crlMs = performance.now() - t0;
    const doneAtEnd = floodDone;
    stop = true;
    await Promise.all(flood);
    latencies.sort((a, b) => a - b);
    return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), crlMs, floodDone: doneAtEnd };
  } finally {
    await server.stop();
    await db.drop();
  }
}

export async function runTenantFairnessBench() {
  console.log(`\n## Fairness between tenants: ${FLOOD} RSA-2048 requests in flight (tenant flood) vs ${CALM_ISSUANCES} EC issuances + 1 revocation (tenant calm), real Postgres`);
  const unbounded = await scenario('0');
  const pooled = await scenario(process.env.KEYGEN_WORKERS ?? '');
  console.log('| key generation | calm EC p50 ms | calm EC p99 ms | revocation → CRL file ms | flood certificates meanwhile |');
  console.log('|---|---|---|---|---|');
  for (const [name, f] of [['unbounded (libuv pool, before)', unbounded], ['bounded pool (KEYGEN_WORKERS)', pooled]] as const) {
    console.log(`| ${name} | ${fmt(f.p50)} | ${fmt(f.p99)} | ${fmt(f.crlMs)} | ${f.floodDone} |`);
  }
  console.log(`ratios unbounded/pool: p99 ${fmt(unbounded.p99 / pooled.p99, 1)}x, revocation → file ${fmt(unbounded.crlMs / pooled.crlMs, 1)}x; targets: p99 < 500 ms, revocation → file < 1000 ms`);
  emitTable({
    id: 'tenant-fairness',
    title: 'Fairness between tenants',
    description: `Tenant flood keeps ${FLOOD} RSA-2048 generate requests in flight; tenant calm issues ${CALM_ISSUANCES} EC P-256 certificates one after another and revokes one (timed until the CRL file lists it). The bounded RSA key generation pool (KEYGEN_WORKERS default) against the unbounded peer (KEYGEN_WORKERS=0, RSA in libuv's thread pool, as before), same run, real Postgres.`,
    columns: ['key generation', 'calm EC p50 ms', 'calm EC p99 ms', 'revocation to CRL file ms', 'flood certificates meanwhile'],
    rows: [
      ['unbounded (peer)', round(unbounded.p50), round(unbounded.p99), round(unbounded.crlMs), unbounded.floodDone],
      ['bounded pool', round(pooled.p50), round(pooled.p99), round(pooled.crlMs), pooled.floodDone],
    ],
    notes: [`unbounded / pool: p99 ${ratio(unbounded.p99, pooled.p99)}, revocation to file ${ratio(unbounded.crlMs, pooled.crlMs)}; targets p99 < 500 ms, revocation < 1000 ms`],
  });
  return { unbounded, pooled };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runTenantFairnessBench();
}
