-- Device CAs as records with a lifecycle (issue 19). System table: operator role only (no RLS,
-- certfleet_app gets no grant), like crl_state. The key itself is never stored: key_ref names a
-- file (key_kind 'file': its path) or an object in a PKCS#11 token (key_kind 'pkcs11': its RFC 7512 URI, no PIN).
CREATE TABLE certificate_authorities (
  id                 text PRIMARY KEY,
  -- null: the global scope (every tenant without an active CA of its own).
  tenant_id          text,
  status             text NOT NULL CHECK (status IN ('staged', 'active', 'retiring', 'retired', 'revoked')),
  subject            text NOT NULL,
  -- device_certificates.issuer of the certificates it signs (its CN): the CRL scope. CAs created or
  -- imported through the API never share one (checked there); a CA adopted from DEVICE_CA_* may
  -- share its predecessor's CN (as before CA records: their CRL scopes then overlap).
  issuer_label       text NOT NULL,
  -- Subject key identifier (hex): its crl_state row.
  issuer_key_id      text NOT NULL UNIQUE,
  not_before         timestamptz NOT NULL,
  not_after          timestamptz NOT NULL,
  cert_pem           text NOT NULL,
  key_kind           text NOT NULL CHECK (key_kind IN ('file', 'pkcs11')),
  key_ref            text NOT NULL,
  -- The CRL distribution point of its certificates = the Issuing Distribution Point of its CRL (fixed for its life).
  crl_url            text NOT NULL,
  created_at         timestamptz NOT NULL,
  created_by         text NOT NULL,
  activated_at       timestamptz,
  retiring_at        timestamptz,
  retired_at         timestamptz,
  revoked_at         timestamptz,
  revocation_reason  text,
  CHECK ((status = 'revoked') = (revoked_at IS NOT NULL)),
  CHECK (status <> 'revoked' OR revocation_reason IS NOT NULL),
  CHECK (status NOT IN ('active', 'retiring') OR activated_at IS NOT NULL)
);
-- At most one active CA per scope; the global scope is tenant_id NULL (COALESCE: NULLs are distinct in a UNIQUE index).
CREATE UNIQUE INDEX certificate_authorities_one_active ON certificate_authorities ((COALESCE(tenant_id, ''))) WHERE status = 'active';
GRANT SELECT, INSERT, UPDATE ON certificate_authorities TO certfleet_operator;

-- Each device certificate records the CA that signed it. Certificates issued before this migration
-- are backfilled at start, in batches, when the configured CA (DEVICE_CA_*) is imported as the active
-- global CA (their issuer column already names it). No foreign key: the issuing path inserts
-- certificates as certfleet_app, which cannot read the operator-only CA table, and a restored
-- database whose CA rows are older than its certificates must still accept them (the CA of the
-- configured key is re-imported at start).
ALTER TABLE device_certificates ADD COLUMN ca_id text;
-- Migration progress (active certificates per CA and tenant) and rotate-expiring --issuer.
CREATE INDEX device_certificates_ca_active ON device_certificates (ca_id, tenant_id, not_after) WHERE status = 'ACTIVE';
-- The backfill finds the rows without a CA by issuer.
CREATE INDEX device_certificates_issuer_no_ca ON device_certificates (issuer, id) WHERE ca_id IS NULL;
