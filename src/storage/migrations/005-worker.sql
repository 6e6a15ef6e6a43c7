-- One lease row per periodic task: the replica that holds it (holder, expires_at) runs the
-- task; everyone else skips it until the lease expires. System table: operator role only.
CREATE TABLE worker_leases (
  name                  text PRIMARY KEY,
  holder                text NOT NULL,
  expires_at            timestamptz NOT NULL,
  last_started_at       timestamptz,
  last_finished_at      timestamptz,
  last_status           text CHECK (last_status IN ('running', 'ok', 'failed')),
  last_error            text,
  last_duration_ms      integer,
  runs_total            bigint NOT NULL DEFAULT 0,
  failures_total        bigint NOT NULL DEFAULT 0,
  consecutive_failures  integer NOT NULL DEFAULT 0
);
GRANT SELECT, INSERT, UPDATE, DELETE ON worker_leases TO certfleet_operator;
