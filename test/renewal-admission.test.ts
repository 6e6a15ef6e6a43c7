/**
 * Issue 21.5, the admission of renewals (src/renewal/admission.ts) on its own: a bounded number
 * run at once, per-tenant queues served in turn, refusals (SERVICE_SATURATED with
 * retry_after_seconds) when a tenant's queue is full or a request waited too long, and a request
 * whose client left dropped unrun. test/renewal-storm.test.ts drives the same through real EST
 * and a real Mosquitto.
 */
import { describe, expect, it } from 'vitest';
import { createAdmission } from '../src/renewal/admission.ts';
import { isAppError } from '../src/domain/errors.ts';

/** Work that finishes when the test says so. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('renewal admission', () => {
  it('runs at most maxConcurrent at once and serves waiting tenants in turn (9 of a big tenant cannot starve 3 of a small one)', async () => {
    const admission = createAdmission({ maxConcurrent: 2, queuePerTenant: 100, maxWaitMs: 60_000 });
    const order: string[] = [];
    const blockers = [gate(), gate()];
    let running = 0;
    let maxRunning = 0;
    const work = (name: string, wait?: Promise<void>) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      order.push(name);
      await (wait ?? settle());
      running--;
      return name;
    };
    // Two slots taken, then the big tenant queues 9 before the small one queues 3.
    const first = [admission.run('big', work('big-0', blockers[0].opened)), admission.run('big', work('big-1', blockers[1].opened))];
    const big = Array.from({ length: 9 }, (_, i) => admission.run('big', work(`big-${i + 2}`)));
    const small = Array.from({ length: 3 }, (_, i) => admission.run('small', work(`small-${i}`)));
    expect(admission.stats()).toMatchObject({ running: 2, waiting: 12 });
    blockers.forEach((b) => b.open());
    await Promise.all([...first, ...big, ...small]);
    expect(maxRunning).toBe(2);
    // After the two running: big and small alternate until the small tenant is done.
    const smallDoneAt = order.indexOf('small-2');
    expect(order.slice(2, 8)).toEqual(['big-2', 'small-0', 'big-3', 'small-1', 'big-4', 'small-2']);
    expect(smallDoneAt).toBe(7);
    expect(admission.stats()).toMatchObject({ running: 0, waiting: 0, refused: 0, admitted: 14 });
  });

  it("refuses with SERVICE_SATURATED and retry_after_seconds when the tenant's queue is full, without touching other tenants", async () => {
    const admission = createAdmission({ maxConcurrent: 1, queuePerTenant: 2, maxWaitMs: 60_000, random: () => 0 });
    const blocker = gate();
    let ran = 0;
    const running = admission.run('big', async () => blocker.opened);
    const queued = [admission.run('big', async () => ran++), admission.run('big', async () => ran++)];
    const refused = await admission.run('big', async () => ran++).catch((e: unknown) => e);
    expect(isAppError(refused) && refused.code).toBe('SERVICE_SATURATED');
    const retryAfter = isAppError(refused) ? refused.details?.retry_after_seconds : undefined;
    expect(typeof retryAfter === 'number' && retryAfter >= 1 && retryAfter <= 300).toBe(true);
    // Another tenant still gets a place in the queue.
    const other = admission.run('small', async () => ran++);
    expect(admission.stats()).toMatchObject({ waiting: 3, refused: 1 });
    blocker.open();
    await Promise.all([running, ...queued, other]);
    expect(ran).toBe(3); // the refused request never ran
  });

  it('refuses a request that waited longer than maxWaitMs, and drops unrun one whose client left', async () => {
    const admission = createAdmission({ maxConcurrent: 1, queuePerTenant: 10, maxWaitMs: 50 });
    const blocker = gate();
    let ran = 0;
    const running = admission.run('t', async () => blocker.opened);
    const timedOut = await admission.run('t', async () => ran++).catch((e: unknown) => e);
    expect(isAppError(timedOut) && timedOut.code).toBe('SERVICE_SATURATED');
    let gone = false;
    const abandoned = admission.run('t', async () => ran++, () => gone).catch((e: unknown) => e);
    const kept = admission.run('t', async () => ran++);
    gone = true;
    blocker.open();
    await running;
    expect(await kept).toBe(0); // the first to run after the abandoned one was dropped
    expect(isAppError(await abandoned)).toBe(true);
    expect(ran).toBe(1);
  });

  it('tells refused devices to come back at the measured completion rate, and refuses at once a request whose turn would come after maxWaitMs', async () => {
    // Ten slots whose renewals each take 5 s (they wait on the database) but complete 100 ms apart:
    // the slots deliver 10 per second, not the 2 per second that 10 / 5 s suggests.
    let t = 0;
    const admission = createAdmission({ maxConcurrent: 10, queuePerTenant: 1000, maxWaitMs: 950, now: () => t, random: () => 0.5 });
    const first = Array.from({ length: 10 }, () => gate());
    const running = first.map((g) => admission.run('big', async () => g.opened));
    for (const [i, g] of first.entries()) {
      t = 5000 + i * 100;
      g.open();
      await settle();
    }
    await Promise.all(running);
    // Measured: 10 completions in the last 900 ms, 90 ms per renewal. The slots busy again, then a
    // queue: 10 fit in maxWaitMs (950 ms).
    const second = Array.from({ length: 10 }, () => gate());
    const busy = second.map((g) => admission.run('big', async () => g.opened));
    const queued = Array.from({ length: 10 }, () => admission.run('big', async () => undefined));
    expect(admission.stats()).toMatchObject({ running: 10, waiting: 10, refused: 0 });
    // The 11th would wait 990 ms: refused now, not after waiting in vain.
    const refused = await admission.run('big', async () => undefined).catch((e: unknown) => e);
    expect(isAppError(refused) && refused.code).toBe('SERVICE_SATURATED');
    expect(admission.stats()).toMatchObject({ running: 10, waiting: 10, refused: 1 });
    // Its ticket: after the 10 queued and itself at 90 ms each (990 ms: 1 s), not at the 358 ms
    // each that 10 slots / the 3.6 s a renewal took on average suggest (4 s).
    const retryAfter = isAppError(refused) ? refused.details?.retry_after_seconds : undefined;
    expect(retryAfter).toBe(1);
    second.forEach((g) => g.open());
    await Promise.all([...busy, ...queued]);
  });

  it("weighs the tenants' tickets by their demand: a small tenant neither doubles a big one's wait nor waits behind it", async () => {
    // One slot, 100 ms per renewal (nothing measured yet), two waiting per tenant at most.
    const admission = createAdmission({ maxConcurrent: 1, queuePerTenant: 2, maxWaitMs: 60_000, now: () => 0, random: () => 0.5 });
    const blocker = gate();
    const running = admission.run('big', async () => blocker.opened);
    const queued: Promise<number>[] = [admission.run('big', async () => 0), admission.run('big', async () => 0), admission.run('small', async () => 0)];
    const retryAfter = async (tenant: string) => {
      const e = await admission.run(tenant, async () => 0).catch((error: unknown) => error);
      return isAppError(e) ? e.details?.retry_after_seconds : undefined;
    };
    // The big tenant's 30 refused devices: the 30th comes after its 2 waiting, its 29 earlier
    // refused and the small tenant's 1 waiting: 33 renewals, 3.3 s (not 2 x 32 x 100 ms, as if
    // the small tenant took every other slot all along).
    const big: unknown[] = [];
    for (let i = 0; i < 30; i++) big.push(await retryAfter('big'));
    expect(big[29]).toBe(4);
    // The small tenant, its queue full: after its 2 waiting and 3 of the big tenant's, 0.6 s.
    queued.push(admission.run('small', async () => 0));
    expect(await retryAfter('small')).toBe(1);
    blocker.open();
    await Promise.allSettled([running, ...queued]);
  });
});
