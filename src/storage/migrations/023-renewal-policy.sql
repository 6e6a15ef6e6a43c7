-- Renewal policy per tenant (issue 21, items 2 and 3): validity of issued device certificates,
-- the renewal window (fraction of the lifetime) and its jitter, and the recovery window (days
-- after notAfter in which an expired certificate may still renew; 0 = off). NULL = default.
ALTER TABLE tenant_settings
  ADD COLUMN renewal_validity_days integer CHECK (renewal_validity_days BETWEEN 1 AND 3650),
  ADD COLUMN renewal_window double precision CHECK (renewal_window >= 0.05 AND renewal_window <= 0.9),
  ADD COLUMN renewal_jitter double precision CHECK (renewal_jitter >= 0 AND renewal_jitter <= 1),
  ADD COLUMN recovery_window_days integer NOT NULL DEFAULT 0 CHECK (recovery_window_days BETWEEN 0 AND 365);

-- Renewal schedule of a certificate in (or near) its window, one row per certificate: when its
-- advice is due (retained on certfleet/renew/<CN>/advice; published_at once sent) and when it is
-- overdue (the expiry alert is raised from then on). Written by the worker's renewal-advice task.
CREATE TABLE renewal_advice (
  certificate_id bigint PRIMARY KEY REFERENCES device_certificates (id),
  tenant_id      text NOT NULL,
  device_id      text NOT NULL,
  due_at         timestamptz NOT NULL,
  -- Half of the window (due_at .. not_after) gone: the expiry alert is raised from here on.
  overdue_at     timestamptz NOT NULL,
  published_at   timestamptz
);
CREATE INDEX renewal_advice_due ON renewal_advice (due_at) WHERE published_at IS NULL;
CREATE INDEX renewal_advice_overdue ON renewal_advice (overdue_at);
CREATE INDEX renewal_advice_device ON renewal_advice (tenant_id, device_id);
ALTER TABLE renewal_advice ENABLE ROW LEVEL SECURITY;
ALTER TABLE renewal_advice FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON renewal_advice USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON renewal_advice TO certfleet_app, certfleet_operator;
