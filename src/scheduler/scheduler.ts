import { Counter, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../domain/clock.ts';
import type { Logger } from '../support/logger.ts';
import type { LeaseGrant, Leases } from './leases.ts';

export type TaskCounts = Record<string, unknown>;

export interface WorkerTask {
  name: string;
  /** The period: the task runs once per period across all replicas. */
  everyMs: number;
  /** How far ahead a running task's lease expires (a heartbeat extends it). Default 2 min. */
  runLeaseMs?: number;
  /**
   * runOnce (`worker --once`): the tasks listed before this one that it waits for, by name; it runs
   * concurrently with the others. Absent: after every task listed before it (one at a time, in order).
   */
  onceAfter?: readonly string[];
  run(): Promise<TaskCounts | void>;
}

export interface TaskReport {
  task: string;
  status: 'ok' | 'failed' | 'skipped';
  duration_ms: number;
  counts?: TaskCounts;
  error?: string;
  /** Why a task was skipped: the replica that holds its lease. */
  held_by?: string | null;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const nodeTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface WorkerMetrics {
  duration: Histogram<'task'>;
  failures: Counter<'task'>;
}

/** The scheduler's metrics in `registry` (reused when already there: several workers may share one registry in tests). */
export function workerMetrics(registry: Registry): WorkerMetrics {
  const existing = registry.getSingleMetric('certfleet_worker_task_duration_seconds');
  if (existing) {
    return {
      duration: existing as Histogram<'task'>,
      failures: registry.getSingleMetric('certfleet_worker_task_failures_total') as Counter<'task'>,
    };
  }
  return {
    duration: new Histogram({
      name: 'certfleet_worker_task_duration_seconds',
      help: 'Duration of worker task runs on this replica',
      labelNames: ['task'],
      buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    failures: new Counter({
      name: 'certfleet_worker_task_failures_total',
      help: 'Worker task runs that failed on this replica',
      labelNames: ['task'],
      registers: [registry],
    }),
  };
}

export interface SchedulerOptions {
  tasks: WorkerTask[];
  leases: Leases;
  clock: Clock;
  /** This replica's identity in the lease table. */
  holder: string;
  /** One JSON-able object per line. */
  logger: Logger;
  metrics?: WorkerMetrics;
  timers?: Timers;
  /** How often the loop looks for due tasks. Default 1 s (it only asks the database when a lease may be free). */
  pollMs?: number;
  /** After a failure the lease is kept this long at most, so the task is retried sooner than a full period. Default 60 s. */
  failureRetryMs?: number;
}

export interface Scheduler {
  /**
   * Every task once, whatever their period (`certfleet worker --once`): in order, or as soon as
   * the tasks named by its `onceAfter` (listed before it) have finished; reports in task order. A task
   * another replica is running at this moment is skipped (reported as skipped, not failed);
   * a lease merely kept for its period is taken over. Failures are isolated.
   */
  runOnce(): Promise<TaskReport[]>;
  /** One pass of the loop: the due tasks whose lease this replica wins, run concurrently. */
  tick(): Promise<TaskReport[]>;
  start(): void;
  /** Stops the loop and waits for the running tasks. */
  stop(): Promise<void>;
}

const DEFAULT_RUN_LEASE_MS = 120_000;

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { tasks, leases, clock, holder, logger: log, metrics } = options;
  const timers = options.timers ?? nodeTimers;
  const pollMs = options.pollMs ?? 1_000;
  const failureRetryMs = options.failureRetryMs ?? 60_000;
  const names = new Set<string>();
  for (const t of tasks) {
    if (names.has(t.name)) throw new Error(`two worker tasks named ${t.name}`);
    if (!(t.everyMs > 0)) throw new Error(`worker task ${t.name}: everyMs must be positive`);
    names.add(t.name);
    options.metrics?.failures.inc({ task: t.name }, 0); // every task has a series from the start
  }
  /** When this replica next asks for a task's lease (clock ms); absent = now. */
  const nextTry = new Map<string, number>();
  const running = new Map<string, Promise<TaskReport>>();
  let timer: unknown = null;
  let stopped = true;

  const report = (r: TaskReport) => {
    const level = r.status === 'failed' ? 'error' : changedSomething(r) ? 'info' : 'debug';
    log[level]({ holder, ...r }, 'worker task');
    return r;
  };

  const execute = async (task: WorkerTask, grant: LeaseGrant): Promise<TaskReport> => {
    const runLeaseMs = task.runLeaseMs ?? DEFAULT_RUN_LEASE_MS;
    const heartbeat = timers.setInterval(() => {
      leases.heartbeat(grant, clock.now(), runLeaseMs).then(
        (held) => {
          if (!held) log.warn({ task: task.name, holder }, 'worker lease lost while running');
        },
        (e: unknown) => log.warn({ task: task.name, holder, error: (e as Error)?.message ?? String(e) }, 'worker lease heartbeat failed (retried at the next beat)'),
      );
    }, Math.max(1_000, Math.floor(runLeaseMs / 3)));
    const t0 = performance.now();
    let counts: TaskCounts | undefined;
    let error: string | undefined;
    try {
      counts = (await task.run()) ?? {};
    } catch (e) {
      error = (e as Error)?.message || String(e);
    } finally {
      timers.clearInterval(heartbeat);
    }
    const durationMs = performance.now() - t0;
    const now = clock.now();
    const periodEnd = grant.startedAt.getTime() + task.everyMs;
    const holdUntil = new Date(error === undefined ? Math.max(periodEnd, now.getTime()) : Math.max(now.getTime(), Math.min(periodEnd, now.getTime() + failureRetryMs)));
    nextTry.set(task.name, holdUntil.getTime());
    metrics?.duration.observe({ task: task.name }, durationMs / 1000);
    if (error !== undefined) metrics?.failures.inc({ task: task.name });
    try {
      if (!(await leases.finish(grant, now, { ok: error === undefined, error, durationMs, holdUntil }))) {
        log.warn({ task: task.name, holder }, 'worker lease was taken over before the task finished');
      }
    } catch (e) {
      log.warn({ task: task.name, holder, error: (e as Error).message }, 'could not record the task outcome');
    }
    const rounded = Math.round(durationMs * 10) / 10;
    return report(error === undefined ? { task: task.name, status: 'ok', duration_ms: rounded, counts } : { task: task.name, status: 'failed', duration_ms: rounded, error });
  };

  const attempt = async (task: WorkerTask, mode: 'periodic' | 'once'): Promise<TaskReport> => {
    const now = clock.now();
    let grant;
    try {
      grant = await leases.acquire(task.name, holder, now, task.runLeaseMs ?? DEFAULT_RUN_LEASE_MS, mode);
    } catch (e) {
      metrics?.failures.inc({ task: task.name });
      nextTry.set(task.name, now.getTime() + Math.min(failureRetryMs, task.everyMs));
      return report({ task: task.name, status: 'failed', duration_ms: 0, error: `lease: ${(e as Error).message}` });
    }
    if (!grant.acquired) {
      nextTry.set(task.name, grant.expiresAt?.getTime() ?? now.getTime() + pollMs);
      const skipped: TaskReport = { task: task.name, status: 'skipped', duration_ms: 0, held_by: grant.holder };
      return mode === 'once' ? report(skipped) : skipped;
    }
    return execute(task, grant);
  };

  const startDue = () => {
    const now = clock.now().getTime();
    const started: Promise<TaskReport>[] = [];
    for (const task of tasks) {
      if (running.has(task.name) || (nextTry.get(task.name) ?? 0) > now) continue;
      const p = attempt(task, 'periodic').finally(() => running.delete(task.name));
      running.set(task.name, p);
      started.push(p);
    }
    return started;
  };

  const loop = () => {
    if (stopped) return;
    // attempt() reports its failures itself; anything else it throws is logged here, not left unhandled.
    for (const started of startDue()) started.catch((e: unknown) => log.error({ holder, error: (e as Error)?.message ?? String(e) }, 'worker task attempt failed'));
    timer = timers.setTimeout(loop, pollMs);
  };

  return {
    async runOnce() {
      // Each task starts once the tasks it waits for have finished (whatever their outcome); reports in task order.
      const started = new Map<string, Promise<TaskReport>>();
      for (const [i, task] of tasks.entries()) {
        const waitFor = task.onceAfter ?? tasks.slice(0, i).map((t) => t.name);
        const before = waitFor.map((name) => started.get(name)).filter((p) => p !== undefined);
        started.set(task.name, Promise.all(before).then(() => attempt(task, 'once')));
      }
      return Promise.all(tasks.map((t) => started.get(t.name)!));
    },
    async tick() {
      return Promise.all(startDue());
    },
    start() {
      if (!stopped) return;
      stopped = false;
      loop();
    },
    async stop() {
      stopped = true;
      if (timer !== null) timers.clearTimeout(timer);
      timer = null;
      await Promise.allSettled([...running.values()]);
    },
  };
}

/** A run that found nothing to do (every count zero or false, or skipped) logs at debug. */
function changedSomething(r: TaskReport): boolean {
  if (r.status !== 'ok' || !r.counts) return false;
  return Object.values(r.counts).some((v) => v === true || (typeof v === 'number' && v > 0) || (typeof v === 'string' && /^[1-9]\d*$/.test(v)));
}
