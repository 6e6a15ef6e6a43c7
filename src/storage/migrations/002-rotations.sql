-- A rotation schedules the revocation of one old certificate after its replacement was issued.
CREATE TABLE certificate_rotations (
  id                   bigserial PRIMARY KEY,
  tenant_id            text NOT NULL,
  device_id            text NOT NULL,
  new_certificate_id   bigint NOT NULL REFERENCES device_certificates (id),
  old_certificate_id   bigint NOT NULL REFERENCES device_certificates (id),
  scheduled_revoke_at  timestamptz NOT NULL,
  status               text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'COMPLETED', 'CANCELLED')),
  completed_at         timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, device_id) REFERENCES device_registry (tenant_id, device_id)
);
-- Each old certificate has at most one pending scheduled revocation.
CREATE UNIQUE INDEX certificate_rotations_one_pending ON certificate_rotations (old_certificate_id) WHERE status = 'PENDING';
CREATE INDEX certificate_rotations_due ON certificate_rotations (scheduled_revoke_at) WHERE status = 'PENDING';
CREATE INDEX certificate_rotations_device ON certificate_rotations (tenant_id, device_id, status);

ALTER TABLE certificate_rotations ENABLE ROW LEVEL SECURITY;
ALTER TABLE certificate_rotations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON certificate_rotations
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON certificate_rotations TO certfleet_app, certfleet_operator;
GRANT USAGE ON SEQUENCE certificate_rotations_id_seq TO certfleet_app, certfleet_operator;
