-- Device-initiated renewal (EST, MQTT): who started a rotation and how it was confirmed.
ALTER TABLE certificate_rotations
  ADD COLUMN started_by text,
  ADD COLUMN confirmed_via text CHECK (confirmed_via IN ('api', 'est', 'mqtt'));
CREATE INDEX certificate_rotations_new_certificate ON certificate_rotations (new_certificate_id);

-- One-time secrets for a device's first EST enrollment (simpleenroll). Only a hash is stored.
CREATE TABLE enrollment_tokens (
  id            bigserial PRIMARY KEY,
  tenant_id     text NOT NULL,
  device_id     text NOT NULL,
  token_sha256  text NOT NULL UNIQUE,
  expires_at    timestamptz NOT NULL,
  used_at       timestamptz,
  created_by    text NOT NULL,
  created_at    timestamptz NOT NULL,
  FOREIGN KEY (tenant_id, device_id) REFERENCES device_registry (tenant_id, device_id)
);
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (tenant_id, device_id);

ALTER TABLE enrollment_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE enrollment_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON enrollment_tokens
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON enrollment_tokens TO certfleet_app, certfleet_operator;
GRANT USAGE ON SEQUENCE enrollment_tokens_id_seq TO certfleet_app, certfleet_operator;
