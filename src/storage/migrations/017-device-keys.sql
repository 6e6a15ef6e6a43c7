-- Device keys (issue 23, item 6): a key whose certificate was revoked for keyCompromise is never
-- certified again, in any tenant; one key serves one device unless the tenant allows sharing.
--
-- The key of each certificate from now on, as the SHA-256 of its SubjectPublicKeyInfo DER (hex).
-- Certificates stored before this migration have none: their keys are not checked.
ALTER TABLE device_certificates ADD COLUMN spki_sha256 text;
CREATE INDEX device_certificates_tenant_spki ON device_certificates (tenant_id, spki_sha256) WHERE spki_sha256 IS NOT NULL;

-- Keys revoked for keyCompromise, across tenants (no tenant column, no row-level security: a key
-- compromised anywhere is refused everywhere, and the table holds only hashes of public keys).
CREATE TABLE compromised_keys (
  spki_sha256   text PRIMARY KEY,
  compromised_at timestamptz NOT NULL
);
GRANT SELECT, INSERT ON compromised_keys TO certfleet_app, certfleet_operator;

-- Per-tenant settings; a tenant without a row has the defaults.
CREATE TABLE tenant_settings (
  tenant_id                text PRIMARY KEY,
  allow_shared_device_keys boolean NOT NULL DEFAULT false,
  updated_at               timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenant_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_settings USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON tenant_settings TO certfleet_app, certfleet_operator;
