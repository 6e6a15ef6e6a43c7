/** Backoff: the doubling rule capped at its maximum, with jitter over [50 %, 100 %] of each delay (random injected). */
import { describe, expect, it } from 'vitest';
import { exponentialDelayMs, jitteredDelayMs } from '../src/domain/backoff.ts';
import { createBackoff } from '../src/support/backoff.ts';

describe('backoff', () => {
  it('doubles from the initial delay up to the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => exponentialDelayMs(100, 1_000, n))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('jitter spreads a delay over [half, whole], never above the rule', () => {
    expect(jitteredDelayMs(1_000, () => 0)).toBe(1_000);
    expect(jitteredDelayMs(1_000, () => 0.5)).toBe(750);
    expect(jitteredDelayMs(1_000, () => 0.999_999)).toBe(500);
    expect(jitteredDelayMs(1_000, () => 7)).toBe(500); // a bad source is clamped
    for (let i = 0; i < 1_000; i++) {
      const d = jitteredDelayMs(800, Math.random);
      expect(d).toBeGreaterThanOrEqual(400);
      expect(d).toBeLessThanOrEqual(800);
    }
  });

  it('createBackoff: exact with random() = 0, jittered otherwise, reset after a success; current is what next() returns', () => {
    const exact = createBackoff(100, 400, () => 0);
    expect([exact.next(), exact.next(), exact.next(), exact.next()]).toEqual([100, 200, 400, 400]);
    exact.reset();
    expect(exact.current).toBe(100);
    expect(exact.next()).toBe(100);

    const halves = createBackoff(100, 400, () => 0.5);
    expect([halves.next(), halves.next(), halves.next()]).toEqual([75, 150, 300]);

    const random = createBackoff(1_000, 60_000);
    for (let i = 0; i < 20; i++) {
      const expected = random.current;
      expect(random.next()).toBe(expected);
      expect(expected).toBeLessThanOrEqual(60_000);
    }
  });
});
