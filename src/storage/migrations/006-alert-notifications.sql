-- Alerts: who acknowledged or closed them and why (manual, rotated, revoked, expired, resolved).
ALTER TABLE fleet_alert
  ADD COLUMN acknowledged_by text,
  ADD COLUMN closed_by text,
  ADD COLUMN close_reason text;
-- The worker scans the open alerts of one type across tenants (auto-close).
CREATE INDEX fleet_alert_open_by_type ON fleet_alert (alert_type) WHERE status <> 'CLOSED';
-- An alert closed by hand is not raised again for the same certificate until it escalates.
CREATE INDEX fleet_alert_manually_closed ON fleet_alert (tenant_id, alert_type, fingerprint, severity)
  WHERE status = 'CLOSED' AND close_reason = 'manual';
CREATE INDEX fleet_alert_tenant_device ON fleet_alert (tenant_id, device_id);

-- Per-tenant webhook endpoints. The secret signs every delivery, so it is stored; the
-- tenant role cannot read it back (column privileges): only the worker (operator role) can.
CREATE TABLE notification_webhooks (
  id           bigserial PRIMARY KEY,
  tenant_id    text NOT NULL,
  url          text NOT NULL,
  description  text,
  secret       text NOT NULL,
  enabled      boolean NOT NULL DEFAULT true,
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL
);
CREATE INDEX notification_webhooks_tenant ON notification_webhooks (tenant_id) WHERE enabled;

-- Transactional outbox: one row per (alert event, webhook), written in the transaction that
-- changed the alert, delivered by the worker with retries and exponential backoff.
CREATE TABLE notification_outbox (
  id                bigserial PRIMARY KEY,
  tenant_id         text NOT NULL,
  webhook_id        bigint NOT NULL REFERENCES notification_webhooks (id) ON DELETE CASCADE,
  alert_id          bigint,  -- informational (alerts are never deleted); no foreign key, so queueing 10k events stays cheap
  event             text NOT NULL,
  payload           jsonb NOT NULL,
  status            text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz NOT NULL,
  last_attempt_at   timestamptz,
  last_status_code  integer,
  last_error        text,
  delivered_at      timestamptz,
  created_at        timestamptz NOT NULL
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX notification_outbox_webhook ON notification_outbox (webhook_id, id);
CREATE INDEX notification_outbox_done ON notification_outbox (created_at) WHERE status <> 'PENDING';

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['notification_webhooks', 'notification_outbox'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
  END LOOP;
END $$;
GRANT SELECT (id, tenant_id, url, description, enabled, created_by, created_at, updated_at), INSERT, UPDATE, DELETE
  ON notification_webhooks TO certfleet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_webhooks TO certfleet_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_outbox TO certfleet_app, certfleet_operator;
GRANT USAGE ON SEQUENCE notification_webhooks_id_seq, notification_outbox_id_seq TO certfleet_app, certfleet_operator;
