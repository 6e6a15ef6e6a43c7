/**
 * Memory for the CRLs one publisher builds, reused from one publication to the next instead of a
 * new buffer of several MB each time (pure; no I/O). A fresh buffer that size costs its page
 * faults, and, kept past a few event-loop turns (a publication awaits the database, the thread
 * pool and the disk), it ends in the old generation, where only a full (mark-compact) garbage
 * collection frees it: with a new one per revocation, V8 ran such a collection at nearly every
 * publication (the profile behind this module).
 *
 * Ownership is explicit, so reused bytes are never seen changing by anyone:
 * - `lease(bytes)` hands out a buffer no other lease holds and no kept CRL lives in; its earlier
 *   contents are gone from that moment (the earlier lease is no longer `intact`);
 * - `keep()`: the lease's CRL is the one kept in memory now (the next publication reads it while
 *   it builds the next one): its buffer is not leased again until a later lease is kept;
 * - `release()`: the lease's CRL is not kept (the publication failed): its buffer may be leased again.
 * Whoever needs a CRL's bytes beyond that (an API result held by a caller) copies them while the
 * lease is `intact`, or makes them another way (publish-crl.ts: PublishedCrl.fileDer).
 */
import { sharedBuffer } from '../support/crl-thread.ts';

export interface CrlBufferLease {
  /** At least the bytes asked for (the buffer may be larger: use a view of it). */
  readonly bytes: Buffer;
  /** No later lease has been given this buffer: the bytes are still this lease's. */
  readonly intact: boolean;
  /** The lease's CRL is the one kept now: its buffer stays untouched until a later lease is kept. */
  keep(): void;
  /** The lease's CRL is not kept: its buffer may be leased again (a kept lease stays kept). */
  release(): void;
}

export interface CrlBufferPool {
  lease(bytes: number): CrlBufferLease;
  /** Buffers made so far (tests: memory is reused, not allocated anew). */
  readonly allocated: number;
}

interface Slot {
  bytes: Buffer;
  /** Bumped each time the slot is leased: a lease is intact while the slot still has its generation. */
  generation: number;
  leased: boolean;
}

/** Room above the need when a buffer is (re)made, so a growing CRL is not reallocated at every publication. */
const GROWTH = 1.25;

export function createCrlBufferPool(): CrlBufferPool {
  const slots: Slot[] = [];
  let kept: Slot | null = null;
  let allocated = 0;
  const make = (bytes: number) => {
    allocated++;
    // Shared memory: the CRL thread checks the signature of a large CRL built here without a copy (support/crl-thread.ts).
    return sharedBuffer(Math.ceil(bytes * GROWTH) + 4096);
  };
  return {
    get allocated() {
      return allocated;
    },
    lease(bytes) {
      let slot = slots.find((s) => !s.leased && s !== kept);
      if (!slot) {
        slot = { bytes: make(bytes), generation: 0, leased: false };
        slots.push(slot);
      } else if (slot.bytes.length < bytes) {
        slot.bytes = make(bytes);
      }
      const taken = slot;
      taken.leased = true;
      const generation = ++taken.generation;
      let settled = false;
      return {
        bytes: taken.bytes,
        get intact() {
          return taken.generation === generation;
        },
        keep() {
          if (settled || taken.generation !== generation) return;
          settled = true;
          taken.leased = false;
          kept = taken;
        },
        release() {
          if (settled || taken.generation !== generation) return;
          settled = true;
          taken.leased = false;
        },
      };
    },
  };
}
