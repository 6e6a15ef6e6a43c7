import type { LeaseRow, Leases } from '../scheduler/leases.ts';
import type { Database } from './database.ts';
import type { Queryable } from './driver.ts';
import { dateOrNull } from './rows.ts';

/**
 * Task leases in Postgres (table worker_leases), so that with any number of worker replicas
 * each periodic task runs once per period.
 *
 * Life of a lease:
 * - acquire: one statement (INSERT ... ON CONFLICT (name) DO UPDATE ... WHERE expires_at <= now),
 *   so of several replicas trying at once exactly one wins. While the task runs the lease
 *   expires `runLeaseMs` ahead and a heartbeat pushes it on: a holder that crashes mid-run
 *   loses the lease within runLeaseMs and another replica takes the task over.
 * - finish: the lease is kept until the end of the task's period (started + period), which is
 *   what makes the task run once per period cluster-wide; after a failure it is kept only
 *   until a shorter retry delay. The row also keeps the outcome (last_status, durations,
 *   runs_total, failures_total, consecutive_failures) for operators and the CRL_STALE check.
 * Every write after acquire is fenced on (holder, last_started_at): a holder that lost its
 * lease cannot overwrite the new holder's row.
 *
 * Times are the injected clock's (fake-clock tests; in production the replicas' clocks,
 * whose skew only moves a period's start by that much: every task is idempotent).
 */

const toLeaseRow = (r: Record<string, unknown>): LeaseRow => ({
  name: String(r.name),
  holder: String(r.holder),
  expires_at: dateOrNull(r.expires_at)!,
  last_started_at: dateOrNull(r.last_started_at),
  last_finished_at: dateOrNull(r.last_finished_at),
  last_status: (r.last_status as string | null) ?? null,
  last_error: (r.last_error as string | null) ?? null,
  last_duration_ms: r.last_duration_ms === null ? null : Number(r.last_duration_ms),
  runs_total: Number(r.runs_total),
  failures_total: Number(r.failures_total),
  consecutive_failures: Number(r.consecutive_failures),
});

const MAX_ERROR_LENGTH = 1000;

export function createLeases(db: Database): Leases {
  return {
    async acquire(name, holder, now, runLeaseMs, mode = 'periodic') {
      const expiresAt = new Date(now.getTime() + runLeaseMs);
      const { rows } = await db.asOperator((tx) =>
        tx.query<{ won: boolean; expires_at: unknown; holder: string }>(
          `WITH won AS (
             INSERT INTO worker_leases AS l (name, holder, expires_at, last_started_at, last_status)
             VALUES ($1, $2, $4, $3, 'running')
             ON CONFLICT (name) DO UPDATE
               SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, last_started_at = EXCLUDED.last_started_at, last_status = 'running'
               WHERE l.expires_at <= $3 OR ($5::boolean AND l.last_status IS DISTINCT FROM 'running')
             RETURNING l.expires_at, l.holder
           )
           SELECT true AS won, expires_at, holder FROM won
           UNION ALL
           SELECT false, expires_at, holder FROM worker_leases WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM won)`,
          [name, holder, now, expiresAt, mode === 'once'],
        ),
      );
      const row = rows[0];
      if (row?.won) return { acquired: true, name, holder, startedAt: now };
      return { acquired: false, expiresAt: row ? dateOrNull(row.expires_at) : null, holder: row?.holder ?? null };
    },

    async heartbeat(grant, now, runLeaseMs) {
      const { rowCount } = await db.asOperator((tx) =>
        tx.query(
          `UPDATE worker_leases SET expires_at = GREATEST(expires_at, $4)
           WHERE name = $1 AND holder = $2 AND last_started_at = $3 AND last_status = 'running'`,
          [grant.name, grant.holder, grant.startedAt, new Date(now.getTime() + runLeaseMs)],
        ),
      );
      return rowCount > 0;
    },

    async finish(grant, now, outcome) {
      const { rowCount } = await db.asOperator((tx) =>
        tx.query(
          `UPDATE worker_leases SET
             expires_at = $4, last_finished_at = $5, last_status = $6, last_error = $7, last_duration_ms = $8,
             runs_total = runs_total + 1,
             failures_total = failures_total + CASE WHEN $6 = 'failed' THEN 1 ELSE 0 END,
             consecutive_failures = CASE WHEN $6 = 'failed' THEN consecutive_failures + 1 ELSE 0 END
           WHERE name = $1 AND holder = $2 AND last_started_at = $3`,
          [
            grant.name,
            grant.holder,
            grant.startedAt,
            outcome.holdUntil,
            now,
            outcome.ok ? 'ok' : 'failed',
            outcome.ok ? null : (outcome.error ?? 'failed').slice(0, MAX_ERROR_LENGTH),
            Math.round(outcome.durationMs),
          ],
        ),
      );
      return rowCount > 0;
    },

    async find(name) {
      const { rows } = await db.asOperator((tx) => tx.query('SELECT * FROM worker_leases WHERE name = $1', [name]));
      return rows[0] ? toLeaseRow(rows[0]) : null;
    },
  };
}

/** consecutive_failures of a task's lease row (0 when it never ran), for the CRL_STALE check. */
export async function consecutiveFailuresOf(tx: Queryable, name: string): Promise<number> {
  const { rows } = await tx.query<{ n: number }>('SELECT consecutive_failures AS n FROM worker_leases WHERE name = $1', [name]);
  return Number(rows[0]?.n ?? 0);
}
