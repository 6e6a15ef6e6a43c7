/**
 * The reused memory the publisher builds the broker file's CRL in (src/crl/crl-buffers.ts): a
 * lease never gets the buffer of the kept CRL nor of another lease; a failed run's buffer is
 * reused; two buffers serve any number of publications; `intact` turns false exactly when the
 * buffer is leased again.
 */
import { describe, expect, it } from 'vitest';
import { createCrlBufferPool } from '../src/crl/crl-buffers.ts';

describe('createCrlBufferPool', () => {
  it('alternates two buffers between kept publications, and never hands out the kept one', () => {
    const pool = createCrlBufferPool();
    const a = pool.lease(1000);
    expect(a.bytes.length).toBeGreaterThanOrEqual(1000);
    a.bytes.fill(1, 0, 1000);
    a.keep();
    const b = pool.lease(1000);
    expect(b.bytes.buffer).not.toBe(a.bytes.buffer);
    expect(a.intact).toBe(true);
    b.keep();
    // a is free again once b is kept: the next lease gets it, and a is no longer intact.
    const c = pool.lease(1000);
    expect(c.bytes.buffer).toBe(a.bytes.buffer);
    expect(a.intact).toBe(false);
    expect(b.intact).toBe(true);
    c.keep();
    for (let i = 0; i < 10; i++) pool.lease(1000).keep();
    expect(pool.allocated).toBe(2);
  });

  it("reuses a failed run's buffer, and keeps the kept CRL's buffer untouched meanwhile", () => {
    const pool = createCrlBufferPool();
    const kept = pool.lease(100);
    kept.keep();
    const failed = pool.lease(100);
    failed.release();
    const next = pool.lease(100);
    expect(next.bytes.buffer).toBe(failed.bytes.buffer);
    expect(next.bytes.buffer).not.toBe(kept.bytes.buffer);
    expect(kept.intact).toBe(true);
    // keep() after release() (or twice) changes nothing: the lease was settled.
    failed.keep();
    next.keep();
    expect(pool.lease(100).bytes.buffer).toBe(kept.bytes.buffer);
    expect(pool.allocated).toBe(2);
  });

  it('gives concurrent leases buffers of their own, and grows a buffer that is too small', () => {
    const pool = createCrlBufferPool();
    const one = pool.lease(100);
    const two = pool.lease(100);
    expect(two.bytes.buffer).not.toBe(one.bytes.buffer);
    one.release();
    two.release();
    const big = pool.lease(1_000_000);
    expect(big.bytes.length).toBeGreaterThanOrEqual(1_000_000);
    expect(one.intact).toBe(false); // its buffer, made anew (larger)
    expect(two.intact).toBe(true);
    expect(pool.allocated).toBe(3);
  });
});
