/**
 * The bound on reloads of a large CRL on the local broker's path (serve / worker), like the broker
 * agent's `--large-crl-reload-interval`: after a reload of a CRL file of at least
 * BROKER_LARGE_CRL_BYTES, the next reload waits until BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS
 * after it, and every reload asked for meanwhile is the same one. Fake timers, a counting reloader.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { boundReloads } from '../src/broker/bounded-reloader.ts';
import type { BrokerReloader } from '../src/broker/broker-reloader.ts';
import { loadConfig } from '../src/config.ts';
import { localBrokerReloader } from '../src/composition/local-broker-reloader.ts';
import { silentLogger } from '../src/support/logger.ts';

function counting(): BrokerReloader & { count: number; gate: (() => void) | null; hold: boolean } {
  const r = {
    count: 0,
    gate: null as (() => void) | null,
    hold: false,
    configured: true,
    description: 'counting',
    async reload() {
      r.count++;
      if (r.hold) await new Promise<void>((resolve) => (r.gate = resolve));
    },
  };
  return r;
}

/** Lets the promise chains of the reloader run (no timer advances). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

describe('bounded reloads of a large CRL (local broker)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('a large CRL: the next reload waits for the interval, and every revocation of the wait shares one reload', async () => {
    const inner = counting();
    let bytes = 10_000_000;
    const bounded = boundReloads(inner, { crlBytes: async () => bytes, largeCrlBytes: 4_000_000, intervalMs: 10_000 });
    await bounded.reload();
    expect(inner.count).toBe(1);
    const waits = [bounded.reload(), bounded.reload(), bounded.reload(), bounded.reload()];
    let done = 0;
    for (const w of waits) void w.then(() => done++);
    await vi.advanceTimersByTimeAsync(9_000);
    expect(inner.count).toBe(1);
    expect(done).toBe(0);
    await vi.advanceTimersByTimeAsync(1_000);
    await Promise.all(waits);
    expect(inner.count).toBe(2); // four asks, one reload
    // the CRL became small (a new CA, a cleanup): the following reload is not delayed
    bytes = 1_000;
    const next = bounded.reload();
    await vi.advanceTimersByTimeAsync(10_000);
    await next;
    expect(inner.count).toBe(3);
    await bounded.reload();
    expect(inner.count).toBe(4);
  });

  it('a small CRL is never delayed', async () => {
    const inner = counting();
    const bounded = boundReloads(inner, { crlBytes: async () => 100, largeCrlBytes: 4_000_000, intervalMs: 10_000 });
    for (let i = 0; i < 5; i++) await bounded.reload();
    expect(inner.count).toBe(5);
  });

  it('an ask while the broker is being signalled gets one more reload after it (the file it read may be older)', async () => {
    const inner = counting();
    const bounded = boundReloads(inner, { crlBytes: async () => 100, largeCrlBytes: 4_000_000, intervalMs: 10_000 });
    inner.hold = true;
    const first = bounded.reload();
    await settle();
    expect(inner.count).toBe(1);
    const second = bounded.reload();
    const third = bounded.reload();
    expect(second).toBe(third);
    inner.hold = false;
    inner.gate!();
    await Promise.all([first, second]);
    expect(inner.count).toBe(2);
  });

  it('a failed reload is reported to its callers and does not start the interval', async () => {
    let fail = true;
    let count = 0;
    const inner: BrokerReloader = { configured: true, description: 'flaky', reload: async () => void (count++, fail && (() => { throw new Error('no broker'); })()) };
    const bounded = boundReloads(inner, { crlBytes: async () => 10_000_000, largeCrlBytes: 1, intervalMs: 10_000 });
    await expect(bounded.reload()).rejects.toThrow('no broker');
    fail = false;
    await bounded.reload();
    expect(count).toBe(2);
  });

  it('0 s or no reload configured: the reloader as it is', () => {
    const inner = counting();
    expect(boundReloads(inner, { crlBytes: async () => 1, largeCrlBytes: 0, intervalMs: 0 })).toBe(inner);
    const none: BrokerReloader = { configured: false, description: 'none', reload: async () => undefined };
    expect(boundReloads(none, { crlBytes: async () => 1, largeCrlBytes: 0, intervalMs: 1000 })).toBe(none);
  });
});

describe('BROKER_LARGE_CRL_BYTES / BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS on the serve/worker reloader', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'certfleet-reload-bound-'));
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    rmSync(dir, { recursive: true, force: true });
  });

  it('defaults: 4 MiB and 10 s', () => {
    const config = loadConfig({ CERTFLEET_DATA_DIR: dir });
    expect(config.brokerFleet).toMatchObject({ largeCrlBytes: 4 * 1024 * 1024, largeCrlReloadIntervalMs: 10_000 });
  });

  it('the CRL file’s size decides; the interval comes from the environment', async () => {
    const crl = join(dir, 'crl.pem');
    writeFileSync(crl, Buffer.alloc(2048));
    const config = loadConfig({ CERTFLEET_DATA_DIR: dir, CRL_OUTPUT_PATH: crl, BROKER_LARGE_CRL_BYTES: '1024', BROKER_LARGE_CRL_RELOAD_INTERVAL_SECONDS: '30' });
    const inner = counting();
    const reloader = localBrokerReloader(config, silentLogger, inner);
    await reloader.reload();
    const asks = Promise.all([reloader.reload(), reloader.reload(), reloader.reload()]);
    await vi.advanceTimersByTimeAsync(29_000);
    expect(inner.count).toBe(1);
    await vi.advanceTimersByTimeAsync(1_000);
    await asks;
    expect(inner.count).toBe(2);
    // below the threshold: no wait
    writeFileSync(crl, Buffer.alloc(100));
    const afterLarge = reloader.reload(); // the previous reload was still of a large file
    await vi.advanceTimersByTimeAsync(30_000);
    await afterLarge;
    await reloader.reload();
    await reloader.reload();
    expect(inner.count).toBe(5);
  });

  it('the CRL publication and the ACL sync of one process share one bounded reloader', () => {
    const config = loadConfig({ CERTFLEET_DATA_DIR: dir, BROKER_PID_FILE: join(dir, 'mosquitto.pid') });
    expect(localBrokerReloader(config, silentLogger)).toBe(localBrokerReloader(config, silentLogger));
    expect(localBrokerReloader(config, silentLogger).description).toMatch(/at most one reload per 10000 ms/);
  });
});
