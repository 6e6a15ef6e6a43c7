/**
 * The scheduler's port for task leases: with any number of worker replicas each periodic task
 * runs once per period. Implemented in Postgres/PGlite by src/storage/worker-leases.ts.
 */
export interface LeaseGrant {
  acquired: true;
  name: string;
  holder: string;
  startedAt: Date;
}

export interface LeaseRefusal {
  acquired: false;
  /** When the current lease ends (null when unknown: a concurrent first insert). */
  expiresAt: Date | null;
  holder: string | null;
}

export interface LeaseOutcome {
  ok: boolean;
  error?: string;
  durationMs: number;
  /** The lease is kept until then (end of the period, or the retry time after a failure). */
  holdUntil: Date;
}

export interface LeaseRow {
  name: string;
  holder: string;
  expires_at: Date;
  last_started_at: Date | null;
  last_finished_at: Date | null;
  last_status: string | null;
  last_error: string | null;
  last_duration_ms: number | null;
  runs_total: number;
  failures_total: number;
  consecutive_failures: number;
}

export interface Leases {
  /**
   * `periodic`: only when the lease has expired. `once` (certfleet worker --once): also when
   * the lease is merely being kept for its period, but never while another replica is
   * running the task (that run is not interrupted or doubled: the caller skips it).
   */
  acquire(name: string, holder: string, now: Date, runLeaseMs: number, mode?: 'periodic' | 'once'): Promise<LeaseGrant | LeaseRefusal>;
  /** Extends a running lease; false when it was lost (expired and taken over). */
  heartbeat(grant: LeaseGrant, now: Date, runLeaseMs: number): Promise<boolean>;
  /** Records the outcome and keeps the lease until holdUntil; false when the lease was lost meanwhile. */
  finish(grant: LeaseGrant, now: Date, outcome: LeaseOutcome): Promise<boolean>;
  find(name: string): Promise<LeaseRow | null>;
}
