-- Roles: certfleet_app is subject to row-level security, certfleet_operator bypasses it.
-- Roles are cluster-wide; several databases (tests) may race to create them.
DO $$
BEGIN
  BEGIN
    CREATE ROLE certfleet_app NOLOGIN;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    CREATE ROLE certfleet_operator NOLOGIN BYPASSRLS;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
END $$;

-- The connecting user must be able to SET ROLE to both.
DO $$
BEGIN
  EXECUTE format('GRANT certfleet_app TO %I', current_user);
  EXECUTE format('GRANT certfleet_operator TO %I', current_user);
EXCEPTION WHEN OTHERS THEN NULL;
END $$;

CREATE TABLE device_registry (
  tenant_id   text NOT NULL,
  device_id   text NOT NULL,
  site_id     text,
  status      text NOT NULL DEFAULT 'ACTIVE',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, device_id)
);

CREATE TABLE device_certificates (
  id                  bigserial PRIMARY KEY,
  tenant_id           text NOT NULL,
  device_id           text NOT NULL,
  cert_pem            text NOT NULL,
  fingerprint_sha256  text NOT NULL UNIQUE,
  common_name         text NOT NULL,
  issuer              text NOT NULL,
  serial_number       text NOT NULL,
  key_type            text NOT NULL,
  status              text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'REVOKED', 'EXPIRED')),
  not_before          timestamptz NOT NULL,
  not_after           timestamptz NOT NULL,
  revoked_at          timestamptz,
  revoked_reason      text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, device_id) REFERENCES device_registry (tenant_id, device_id),
  CHECK ((status = 'REVOKED') = (revoked_at IS NOT NULL))
);
CREATE UNIQUE INDEX device_certificates_serial ON device_certificates (issuer, serial_number);
CREATE INDEX device_certificates_device ON device_certificates (tenant_id, device_id, status);
CREATE INDEX device_certificates_active_expiry ON device_certificates (not_after) WHERE status = 'ACTIVE';
-- The CRL reads revoked certificates in serial order (hex without leading zeros: length, then text).
CREATE INDEX device_certificates_revoked ON device_certificates (length(serial_number), serial_number) WHERE status = 'REVOKED';

CREATE TABLE fleet_alert (
  id           bigserial PRIMARY KEY,
  tenant_id    text NOT NULL,
  device_id    text,
  alert_type   text NOT NULL,
  fingerprint  text NOT NULL,
  status       text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'CLOSED')),
  severity     integer NOT NULL,
  summary      text NOT NULL,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  acknowledged_at timestamptz,
  closed_at    timestamptz
);
CREATE UNIQUE INDEX fleet_alert_one_open ON fleet_alert (tenant_id, alert_type, fingerprint) WHERE status <> 'CLOSED';
CREATE INDEX fleet_alert_tenant_status ON fleet_alert (tenant_id, status);

CREATE TABLE audit_events (
  id          bigserial PRIMARY KEY,
  tenant_id   text NOT NULL,
  actor       text NOT NULL,
  action      text NOT NULL,
  target_type text NOT NULL,
  target_id   text NOT NULL,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, created_at);

-- Row-level security: every tenant table, forced so that even the table owner obeys it.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['device_registry', 'device_certificates', 'fleet_alert', 'audit_events'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO certfleet_app, certfleet_operator', t);
  END LOOP;
END $$;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO certfleet_app, certfleet_operator;
GRANT USAGE ON SCHEMA public TO certfleet_app, certfleet_operator;
