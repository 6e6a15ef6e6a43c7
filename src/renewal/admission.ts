/**
 * Admission for device renewals and enrollments (EST and MQTT share one): at most
 * `maxConcurrent` run at once in this process; the others wait in a queue of their tenant
 * (at most `queuePerTenant` each), and a free slot goes to the tenants in turn (round robin),
 * so a tenant with 9,000 devices renewing cannot starve one with 100: each tenant with waiting
 * requests gets an equal share of the slots, and a full queue refuses only its own tenant.
 *
 * A request that finds its tenant's queue full, whose turn would come after more than `maxWaitMs`
 * at the measured completion rate, or that waits longer than `maxWaitMs`, is refused
 * with SERVICE_SATURATED (503) and `retry_after_seconds`: EST answers 503 with `Retry-After`,
 * MQTT a problem with `retry_after_seconds`. Nothing has been done for a refused request, so
 * the device simply asks again later; a request whose client left while it waited (EST: the
 * connection closed) is dropped without being run.
 */
import { AppError } from '../domain/errors.ts';

export interface AdmissionOptions {
  /** Renewals running at once (RENEWAL_MAX_CONCURRENT). */
  maxConcurrent: number;
  /** Waiting renewals per tenant beyond which the tenant's next ones are refused (RENEWAL_QUEUE_PER_TENANT). */
  queuePerTenant: number;
  /** A renewal waiting longer than this is refused (RENEWAL_QUEUE_WAIT_MS). */
  maxWaitMs: number;
  /** Monotonic milliseconds (tests may pass their own). */
  now?: () => number;
  /** [0, 1): the jitter of Retry-After (tests may fix it). */
  random?: () => number;
}

export interface AdmissionStats {
  running: number;
  waiting: number;
  /** Requests refused with SERVICE_SATURATED since start (queue full or waited too long). */
  refused: number;
  admitted: number;
}

export interface Admission {
  /**
   * Runs `work` when a slot is free and it is this tenant's turn; throws SERVICE_SATURATED
   * (nothing run) when the tenant's queue is full or the wait exceeds maxWaitMs. `abandoned`
   * is asked when the turn comes: true (the client is gone) drops the request unrun.
   */
  run<T>(tenantId: string, work: () => Promise<T>, abandoned?: () => boolean): Promise<T>;
  stats(): AdmissionStats;
}

interface Waiter {
  tenantId: string;
  start: () => void;
  refuse: (error: AppError) => void;
  abandoned?: () => boolean;
  timer: NodeJS.Timeout | null;
}

/** Retry-After is at least 1 s (HTTP's unit) and at most this. */
const MAX_RETRY_AFTER_SECONDS = 300;
/** The completion rate is measured over at most this many recent completions … */
const RATE_SAMPLES = 64;
/** … within this window … */
const RATE_WINDOW_MS = 30_000;
/** … and only once at least this many completed in it. */
const MIN_RATE_SAMPLES = 8;
/** Tickets remembered per tenant (beyond that, the newest is not remembered: the count stays bounded). */
const MAX_TICKETS_PER_TENANT = 100_000;

export function createAdmission(options: AdmissionOptions): Admission {
  const now = options.now ?? (() => performance.now());
  const random = options.random ?? Math.random;
  const queues = new Map<string, Waiter[]>(); // insertion order is the round-robin order
  let running = 0;
  let waiting = 0;
  let refused = 0;
  let admitted = 0;
  /** Moving average of how long one renewal takes (ms): the rate estimate until enough have completed. */
  let serviceMs = 100;
  /** When the last renewals completed (ms, `now()`'s clock), oldest first: the measured rate. */
  const completions: number[] = [];

  /**
   * Renewals completed per ms, as measured over the last RATE_SAMPLES completions within
   * RATE_WINDOW_MS (what the slots actually deliver under this load), or null when too few
   * completed lately to say. The estimate from the slots alone (maxConcurrent / the time one
   * renewal took) under load overstated the time per renewal several times (a renewal's time
   * includes its waits on Postgres and on the CPU a storm's TLS handshakes take, while the other
   * slots' renewals progress meanwhile), and refused devices were told to come back minutes after
   * a slot was free for them.
   */
  function measuredRate(t: number): number | null {
    while ((completions[0] ?? Infinity) < t - RATE_WINDOW_MS) completions.shift();
    const oldest = completions[0];
    if (oldest === undefined || completions.length < MIN_RATE_SAMPLES) return null;
    const span = Math.max(1, t - oldest);
    return completions.length / span;
  }

  /** Renewals per ms: the measured rate, or the faster of it and maxConcurrent / the time one renewal took. */
  function rate(t: number): { perMs: number; measured: boolean } {
    const bySlots = options.maxConcurrent / Math.max(1, serviceMs);
    const measured = measuredRate(t);
    // The faster of the two: a rate measured while the slots were not all busy understates them.
    return { perMs: measured === null ? bySlots : Math.max(measured, bySlots), measured: measured !== null };
  }

  /** Per tenant: the times its refused requests were told to come back that are still ahead (ascending). */
  const tickets = new Map<string, number[]>();
  function ticketsAhead(tenantId: string, t: number): number[] {
    const list = tickets.get(tenantId);
    if (!list) return [];
    let due = 0;
    while ((list[due] ?? Infinity) <= t) due++;
    if (due > 0) list.splice(0, due);
    if (list.length === 0) tickets.delete(tenantId);
    return list;
  }

  /**
   * The work (renewals) served before this tenant's k-th next request, the slots going to the
   * tenants in turn: each other tenant's demand counts up to k (a tenant with 20 waiting delays
   * the 9,000th of another by 20, not by 9,000), `demand` its waiting requests (plus, for
   * tickets, its refused ones told to come back later).
   */
  function workBefore(tenantId: string, k: number, demand: (tenant: string) => number): number {
    let work = k;
    const others = new Set([...queues.keys(), ...tickets.keys()]);
    others.delete(tenantId);
    for (const other of others) work += Math.min(demand(other), k);
    return work;
  }

  /**
   * Retry-After as a ticket: a tenant's refused requests are told to come back one after
   * another, after its waiting and earlier refused requests, at the rate the slots serve them
   * (measured) and the tenants share them in turn (workBefore), so 9,000 refused devices come
   * back spread over the minutes they need instead of all in the next second, and a small
   * tenant's refused devices come back soon; a little jitter (+-10%) keeps them from lining up
   * on second boundaries.
   */
  function retryAfterSeconds(tenantId: string): number {
    const t = now();
    const demand = (tenant: string) => (queues.get(tenant)?.length ?? 0) + ticketsAhead(tenant, t).length;
    const k = demand(tenantId) + 1;
    const ticket = t + workBefore(tenantId, k, demand) / rate(t).perMs;
    const mine = ticketsAhead(tenantId, t);
    if (mine.length < MAX_TICKETS_PER_TENANT) {
      mine.push(Math.max(ticket, mine[mine.length - 1] ?? 0));
      tickets.set(tenantId, mine);
    }
    const seconds = Math.ceil(((ticket - t) * (0.9 + random() * 0.2)) / 1000);
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, seconds));
  }

  /** How long one more request of this tenant would wait in its queue (ms), or null before the rate is measured. */
  function expectedWaitMs(tenantId: string, t: number): number | null {
    const r = rate(t);
    if (!r.measured) return null;
    const k = (queues.get(tenantId)?.length ?? 0) + 1;
    return workBefore(tenantId, k, (tenant) => queues.get(tenant)?.length ?? 0) / r.perMs;
  }

  function saturated(tenantId: string, why: string): AppError {
    refused++;
    const retryAfter = retryAfterSeconds(tenantId);
    return new AppError('SERVICE_SATURATED', `certfleet is renewing at capacity (${why}); nothing was done: retry in ${retryAfter} s`, { retry_after_seconds: retryAfter });
  }

  function remove(waiter: Waiter) {
    const queue = queues.get(waiter.tenantId);
    if (!queue) return false;
    const at = queue.indexOf(waiter);
    if (at < 0) return false;
    queue.splice(at, 1);
    waiting--;
    if (queue.length === 0) queues.delete(waiter.tenantId);
    return true;
  }

  /** Gives free slots to waiting requests, one tenant after another. */
  function dispatch() {
    while (running < options.maxConcurrent && waiting > 0) {
      const [tenantId, queue] = queues.entries().next().value as [string, Waiter[]];
      const waiter = queue.shift()!;
      waiting--;
      queues.delete(tenantId);
      if (queue.length > 0) queues.set(tenantId, queue); // to the back of the round
      if (waiter.timer) clearTimeout(waiter.timer);
      if (waiter.abandoned?.()) {
        waiter.refuse(new AppError('SERVICE_SATURATED', 'the client left while its request waited', { retry_after_seconds: 1 }));
        continue;
      }
      waiter.start();
    }
  }

  async function execute<T>(work: () => Promise<T>): Promise<T> {
    running++;
    admitted++;
    const began = now();
    try {
      return await work();
    } finally {
      const t = now();
      serviceMs = serviceMs * 0.9 + (t - began) * 0.1;
      completions.push(t);
      if (completions.length > RATE_SAMPLES) completions.shift();
      running--;
      dispatch();
    }
  }

  return {
    run(tenantId, work, abandoned) {
      if (running < options.maxConcurrent && waiting === 0) return execute(work);
      const queue = queues.get(tenantId) ?? [];
      if (queue.length >= options.queuePerTenant) return Promise.reject(saturated(tenantId, `tenant ${tenantId} has ${queue.length} renewals waiting`));
      // Told at once rather than after waiting maxWaitMs in vain: its turn, at the measured rate, would come too late.
      const wait = expectedWaitMs(tenantId, now());
      if (wait !== null && wait > options.maxWaitMs) {
        return Promise.reject(saturated(tenantId, `tenant ${tenantId} has ${queue.length} renewals waiting, more than ${options.maxWaitMs} ms of work`));
      }
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          tenantId,
          abandoned,
          start: () => void execute(work).then(resolve, reject),
          refuse: reject,
          timer: null,
        };
        waiter.timer = setTimeout(() => {
          if (remove(waiter)) reject(saturated(tenantId, `waited ${options.maxWaitMs} ms`));
        }, options.maxWaitMs);
        waiter.timer.unref?.();
        queue.push(waiter);
        waiting++;
        if (!queues.has(tenantId)) queues.set(tenantId, queue);
      });
    },
    stats: () => ({ running, waiting, refused, admitted }),
  };
}

/** No limit (tests and tools that build a renewal stack without a listener). */
export const unlimitedAdmission: Admission = {
  run: (_tenantId, work) => work(),
  stats: () => ({ running: 0, waiting: 0, refused: 0, admitted: 0 }),
};
