/**
 * PKCS#11 sessions for concurrent signing. A session runs one operation at a time, so each
 * signature takes a session of its own from the pool (at most `max` open; callers queue beyond).
 * A session that failed is closed, never reused: the next signer opens a fresh one.
 */
export class SessionPool<S> {
  private idle: S[] = [];
  private open = 0;
  private waiters: { resolve: (s: S) => void; reject: (e: Error) => void }[] = [];
  private closed = false;

  constructor(
    private readonly max: number,
    private readonly openSession: () => S,
    private readonly closeSession: (s: S) => void,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('a session pool needs at least one session');
  }

  /** Sessions open now (idle and in use). */
  get size(): number {
    return this.open;
  }

  /** Adopts an already open session (the one the signer logged in with). */
  adopt(s: S): void {
    this.open++;
    this.idle.push(s);
  }

  async acquire(): Promise<S> {
    if (this.closed) throw new Error('the PKCS#11 signer is closed');
    const s = this.idle.pop();
    if (s !== undefined) return s;
    if (this.open < this.max) return this.openNew();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** For a synchronous caller (the CRL builder): an idle session, or one more beyond `max` (closed on release). */
  acquireNow(): S {
    if (this.closed) throw new Error('the PKCS#11 signer is closed');
    return this.idle.pop() ?? this.openNew();
  }

  release(s: S, broken = false): void {
    if (broken || this.closed || this.open > this.max) {
      this.discard(s);
      if (this.waiters.length > 0 && this.open < this.max) {
        const waiter = this.waiters.shift()!;
        try {
          if (this.closed) throw new Error('the PKCS#11 signer is closed');
          waiter.resolve(this.openNew());
        } catch (e) {
          waiter.reject(e as Error);
        }
      }
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(s);
    else this.idle.push(s);
  }

  /** After a failure that may have hit every session (token reset, sessions closed): drop the idle ones too. */
  discardIdle(): void {
    for (const s of this.idle.splice(0)) this.discard(s);
  }

  closeIdle(): void {
    this.closed = true;
    for (const s of this.idle.splice(0)) this.discard(s);
    for (const w of this.waiters.splice(0)) w.reject(new Error('the PKCS#11 signer is closed'));
  }

  private openNew(): S {
    const s = this.openSession();
    this.open++;
    return s;
  }

  private discard(s: S): void {
    this.open--;
    try {
      this.closeSession(s);
    } catch {
      // already gone (token removed, module finalized)
    }
  }
}
