import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createManualClock, type ManualClock } from '../src/domain/clock.ts';
import type { LeaseGrant, Leases } from '../src/scheduler/leases.ts';
import { createLeases } from '../src/storage/worker-leases.ts';
import { createScheduler, workerMetrics, type WorkerTask } from '../src/scheduler/scheduler.ts';
import { createTestDatabase, DRIVERS, type TestDatabase } from './support/databases.ts';
import { captureLogger } from './support/capture-logger.ts';
import { silentLogger } from '../src/support/logger.ts';

const MINUTE = 60_000;

describe.each(DRIVERS)('worker leases and scheduler on %s', (kind) => {
  let database: TestDatabase;
  let leases: Leases;
  let clock: ManualClock;

  beforeAll(async () => {
    database = await createTestDatabase(kind);
    leases = createLeases(database.db);
  });
  afterAll(async () => {
    await database?.close();
  });
  beforeEach(async () => {
    await database.reset();
    clock = createManualClock('2026-03-01T00:00:00Z');
  });

  const later = (ms: number) => new Date(clock.now().getTime() + ms);

  it('exactly one of many replicas acquiring at once wins; the others learn when the lease ends', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => leases.acquire('crl', `replica-${i}`, clock.now(), MINUTE)));
    const winners = results.filter((r) => r.acquired);
    expect(winners).toHaveLength(1);
    const holder = (winners[0] as LeaseGrant).holder;
    for (const r of results.filter((r) => !r.acquired)) {
      // a refusal names the holder and the end of its lease (unless it raced the very first insert)
      if (r.acquired === false && r.expiresAt) expect(r).toMatchObject({ holder, expiresAt: later(MINUTE) });
    }
    const row = await leases.find('crl');
    expect(row).toMatchObject({ holder, last_status: 'running', expires_at: later(MINUTE), last_started_at: clock.now() });
  });

  it('keeps the lease for the period after a successful run, then lets the next replica in', async () => {
    const grant = (await leases.acquire('mark-expired', 'a', clock.now(), MINUTE)) as LeaseGrant;
    clock.advance(5_000);
    expect(await leases.finish(grant, clock.now(), { ok: true, durationMs: 5_000, holdUntil: new Date(grant.startedAt.getTime() + 10 * MINUTE) })).toBe(true);
    clock.advance(9 * MINUTE);
    expect(await leases.acquire('mark-expired', 'b', clock.now(), MINUTE)).toMatchObject({ acquired: false, holder: 'a' });
    expect(await leases.acquire('mark-expired', 'a', clock.now(), MINUTE)).toMatchObject({ acquired: false }); // the holder too: once per period
    clock.advance(MINUTE);
    expect(await leases.acquire('mark-expired', 'b', clock.now(), MINUTE)).toMatchObject({ acquired: true, holder: 'b' });
    expect(await leases.find('mark-expired')).toMatchObject({ holder: 'b', runs_total: 1, last_status: 'running', last_duration_ms: 5_000 });
  });

  it("a crashed holder's lease expires; its late outcome cannot overwrite the new holder's row", async () => {
    const crashed = (await leases.acquire('crl', 'a', clock.now(), 2 * MINUTE)) as LeaseGrant;
    clock.advance(2 * MINUTE - 1);
    expect((await leases.acquire('crl', 'b', clock.now(), 2 * MINUTE)).acquired).toBe(false);
    clock.advance(1);
    const taken = (await leases.acquire('crl', 'b', clock.now(), 2 * MINUTE)) as LeaseGrant;
    expect(taken.acquired).toBe(true);
    expect(await leases.heartbeat(crashed, clock.now(), 2 * MINUTE)).toBe(false);
    expect(await leases.finish(crashed, clock.now(), { ok: false, error: 'late', durationMs: 1, holdUntil: later(0) })).toBe(false);
    expect(await leases.find('crl')).toMatchObject({ holder: 'b', last_status: 'running', failures_total: 0 });
    // the live holder's heartbeat pushes its lease on
    clock.advance(MINUTE);
    expect(await leases.heartbeat(taken, clock.now(), 2 * MINUTE)).toBe(true);
    expect((await leases.find('crl'))!.expires_at).toEqual(later(2 * MINUTE));
  });

  it('records failures: counted, consecutive, reset by a success', async () => {
    for (const ok of [false, false, true, false]) {
      const grant = (await leases.acquire('crl', 'a', clock.now(), MINUTE)) as LeaseGrant;
      expect(grant.acquired).toBe(true);
      await leases.finish(grant, clock.now(), { ok, error: ok ? undefined : 'boom', durationMs: 3, holdUntil: clock.now() });
      clock.advance(1);
    }
    expect(await leases.find('crl')).toMatchObject({ runs_total: 4, failures_total: 3, consecutive_failures: 1, last_status: 'failed', last_error: 'boom' });
  });

  it("`once` mode takes over a lease kept for its period, never one that is running", async () => {
    const grant = (await leases.acquire('expiry-alerts', 'loop', clock.now(), MINUTE)) as LeaseGrant;
    expect(await leases.acquire('expiry-alerts', 'once', clock.now(), MINUTE, 'once')).toMatchObject({ acquired: false, holder: 'loop' });
    await leases.finish(grant, clock.now(), { ok: true, durationMs: 1, holdUntil: later(10 * MINUTE) });
    expect(await leases.acquire('expiry-alerts', 'other-loop', clock.now(), MINUTE)).toMatchObject({ acquired: false });
    expect(await leases.acquire('expiry-alerts', 'once', clock.now(), MINUTE, 'once')).toMatchObject({ acquired: true });
  });

  describe('scheduler', () => {
    let logs: Record<string, unknown>[] = [];
    beforeEach(() => {
      logs = [];
    });
    const counter = () => {
      const runs: Record<string, number> = {};
      const task = (name: string, everyMs: number, fail = false): WorkerTask => ({
        name,
        everyMs,
        run: async () => {
          runs[name] = (runs[name] ?? 0) + 1;
          if (fail) throw new Error(`${name} exploded`);
          return { n: runs[name] };
        },
      });
      return { runs, task };
    };
    const scheduler = (holder: string, tasks: WorkerTask[], metrics?: Registry) =>
      createScheduler({ tasks, leases, clock, holder, logger: captureLogger(logs), metrics: metrics ? workerMetrics(metrics) : undefined, failureRetryMs: MINUTE });

    it('with three replicas ticking, each task runs once per period cluster-wide', async () => {
      const { runs, task } = counter();
      const tasks = [task('fast', MINUTE), task('slow', 10 * MINUTE)];
      const replicas = ['a', 'b', 'c'].map((h) => scheduler(h, tasks));
      for (let second = 0; second < 30 * 60; second += 15) {
        await Promise.all(replicas.map((r) => r.tick()));
        clock.advance(15_000);
      }
      expect(runs).toEqual({ fast: 30, slow: 3 });
    });

    it('one failing task never stops the others; it is retried after the failure delay, and counted in the metrics', async () => {
      const { runs, task } = counter();
      const registry = new Registry();
      const s = scheduler('a', [task('broken', 60 * MINUTE, true), task('fine', 60 * MINUTE)], registry);
      const reports = await s.tick();
      expect(reports.map((r) => [r.task, r.status])).toEqual([['broken', 'failed'], ['fine', 'ok']]);
      expect(reports[0].error).toBe('broken exploded');
      expect(logs.find((l) => l.task === 'broken')).toMatchObject({ msg: 'worker task', holder: 'a', status: 'failed', error: 'broken exploded', level: 'error' });
      expect(logs.find((l) => l.task === 'fine')).toMatchObject({ msg: 'worker task', status: 'ok', counts: { n: 1 } });
      clock.advance(MINUTE);
      await s.tick();
      expect(runs).toEqual({ broken: 2, fine: 1 });
      const text = await registry.metrics();
      expect(text).toMatch(/^certfleet_worker_task_failures_total\{task="broken"\} 2$/m);
      expect(text).toMatch(/^certfleet_worker_task_failures_total\{task="fine"\} 0$/m);
      expect(text).toMatch(/^certfleet_worker_task_duration_seconds_count\{task="fine"\} 1$/m);
      expect(await leases.find('broken')).toMatchObject({ consecutive_failures: 2, failures_total: 2 });
    });

    it('runOnce runs every task once whatever its period, skipping only one another replica is running now', async () => {
      const { runs, task } = counter();
      let release!: () => void;
      const blocked: WorkerTask = { name: 'blocked', everyMs: MINUTE, run: () => new Promise<void>((r) => (release = r)) };
      const tasks = [task('one', 60 * MINUTE), blocked, task('two', 60 * MINUTE)];
      const loop = scheduler('loop', tasks);
      const ticking = loop.tick(); // 'one' and 'two' finish, 'blocked' keeps running
      await waitUntil(async () => release !== undefined && (await leases.find('one'))?.last_status === 'ok' && (await leases.find('two'))?.last_status === 'ok', "'one' and 'two' finished, 'blocked' running");
      const reports = await scheduler('once', tasks).runOnce();
      expect(reports.map((r) => [r.task, r.status])).toEqual([['one', 'ok'], ['blocked', 'skipped'], ['two', 'ok']]);
      expect(reports[1].held_by).toBe('loop');
      expect(runs).toEqual({ one: 2, two: 2 });
      release();
      await ticking;
    });

    it('runOnce starts a task with onceAfter beside the others once those it names finished; one without waits for every task before it', async () => {
      const events: string[] = [];
      let cStarted!: () => void;
      const cRunning = new Promise<void>((r) => (cStarted = r));
      const step = (name: string, run: () => Promise<void> = async () => {}, onceAfter?: string[]): WorkerTask => ({
        name,
        everyMs: MINUTE,
        ...(onceAfter ? { onceAfter } : {}),
        run: async () => {
          events.push(`${name} start`);
          await run();
          events.push(`${name} end`);
        },
      });
      const tasks = [
        step('a'),
        // b finishes only once c is running: both run at once, or this never ends (the test times out)
        step('b', () => cRunning, ['a']),
        step('c', async () => cStarted(), ['a']),
        step('d', async () => {}, ['a']),
        step('e'),
      ];
      const reports = await scheduler('once', tasks).runOnce();
      expect(reports.map((r) => [r.task, r.status])).toEqual([['a', 'ok'], ['b', 'ok'], ['c', 'ok'], ['d', 'ok'], ['e', 'ok']]);
      expect(events.slice(0, 2)).toEqual(['a start', 'a end']);
      expect(events.indexOf('c start')).toBeLessThan(events.indexOf('b end'));
      expect(events.slice(-2)).toEqual(['e start', 'e end']); // after every task listed before it
    });

    it('start() runs due tasks on its own timer and stop() waits for the running ones', async () => {
      const { runs, task } = counter();
      // The loop's polls, counted: "not again" is asserted only after the loop has looked several times.
      let polls = 0;
      const timers = {
        setTimeout: (fn: () => void, ms: number) => {
          polls++;
          return setTimeout(fn, ms);
        },
        clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout),
        setInterval: (fn: () => void, ms: number) => setInterval(fn, ms).unref(),
        clearInterval: (h: unknown) => clearInterval(h as NodeJS.Timeout),
      };
      const s = createScheduler({ tasks: [task('t', MINUTE)], leases, clock, holder: 'a', logger: silentLogger, pollMs: 5, timers });
      s.start();
      await waitUntil(async () => runs.t === 1 && (await leases.find('t'))?.last_status === 'ok', 'first run finished');
      const seen = polls;
      await waitUntil(() => polls >= seen + 5, 'five more polls');
      expect(runs.t).toBe(1); // not again within the period
      clock.advance(MINUTE);
      await waitUntil(() => runs.t >= 2, 'the run of the next period');
      await s.stop();
      expect(runs.t).toBe(2);
      // Stopped: no more polls (while running it polled every 5 ms, counted above), so no more runs.
      const stoppedAt = polls;
      clock.advance(10 * MINUTE);
      await new Promise((r) => setTimeout(r, 100));
      expect(polls).toBe(stoppedAt);
      expect(runs.t).toBe(2);
    });
  });
});

/** Polls `condition` until it holds; a readiness wait with a generous limit, not a delay. */
async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
