-- Tenant-wide broker grants: every device of the tenant may read/write tenant/<tenant>/<filter>
-- (validated in src/domain/broker-acl.ts: never device/..., +, #, $ or an empty level).
CREATE TABLE broker_grants (
  tenant_id   text NOT NULL,
  filter      text NOT NULL CHECK (length(filter) BETWEEN 1 AND 200 AND filter NOT LIKE '%$%'),
  access      text NOT NULL CHECK (access IN ('read', 'write', 'readwrite')),
  position    integer NOT NULL,
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, filter)
);

ALTER TABLE broker_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE broker_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON broker_grants
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON broker_grants TO certfleet_app, certfleet_operator;
