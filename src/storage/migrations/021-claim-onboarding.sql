-- Factory (claim) onboarding (issue 21, item 1): a tenant registers the CA certificates of its
-- manufacturers (never their keys) and a provisioning policy; a device that presents a claim
-- certificate issued by one of them is registered and gets its first operational certificate.

-- A manufacturer's CA certificate (its key stays with the manufacturer), with its optional CRL.
CREATE TABLE claim_cas (
  id                 bigserial PRIMARY KEY,
  tenant_id          text NOT NULL,
  name               text,
  ca_cert_pem        text NOT NULL,
  subject            text NOT NULL,
  fingerprint_sha256 text NOT NULL,
  not_before         timestamptz NOT NULL,
  not_after          timestamptz NOT NULL,
  -- The CA's CRL (DER, signature checked against the CA when uploaded); null: none uploaded.
  crl_der            bytea,
  crl_this_update    timestamptz,
  crl_next_update    timestamptz,
  crl_entries        integer,
  created_by         text NOT NULL,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  UNIQUE (tenant_id, fingerprint_sha256)
);

-- One provisioning policy per tenant; a tenant without a row has the default (admit every
-- unexpired claim certificate of a registered claim CA, device id = its CN).
CREATE TABLE provisioning_policies (
  tenant_id        text PRIMARY KEY,
  -- {admit: {cn_patterns, serials}, device_id: {from, pattern}, site_id, approval_webhook: {url, timeout_ms}}
  policy           jsonb NOT NULL,
  -- The approval webhook's HMAC secret, sealed like the notification webhooks' (null: no webhook).
  approval_secret  text,
  updated_by       text NOT NULL,
  updated_at       timestamptz NOT NULL
);

-- Which device each claim certificate onboarded: one claim certificate, one device id (a second
-- device id is refused with CLAIM_CERT_SHARED). Written before the certificate is issued
-- (certificate_id null until then), so two concurrent requests cannot bind one claim twice.
CREATE TABLE claim_enrollments (
  id                  bigserial PRIMARY KEY,
  tenant_id           text NOT NULL,
  claim_fingerprint   text NOT NULL,
  claim_ca_id         bigint NOT NULL, -- no foreign key: removing a claim CA keeps the history
  claim_serial        text NOT NULL,
  claim_subject       text NOT NULL,
  device_id           text NOT NULL,
  certificate_id      bigint REFERENCES device_certificates (id),
  transport           text NOT NULL CHECK (transport IN ('est', 'mqtt')),
  created_at          timestamptz NOT NULL,
  enrolled_at         timestamptz,
  UNIQUE (tenant_id, claim_fingerprint)
);
CREATE INDEX claim_enrollments_device ON claim_enrollments (tenant_id, device_id);

-- Signed provisioning requests already received (MQTT): a replay is refused across restarts and replicas.
CREATE TABLE claim_requests (
  tenant_id          text NOT NULL,
  claim_fingerprint  text NOT NULL,
  request_id         text NOT NULL,
  signed_at          bigint NOT NULL,
  received_at        timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, claim_fingerprint, request_id)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['claim_cas', 'provisioning_policies', 'claim_enrollments', 'claim_requests'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
      'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO certfleet_app, certfleet_operator', t);
  END LOOP;
END $$;
GRANT USAGE ON SEQUENCE claim_cas_id_seq, claim_enrollments_id_seq TO certfleet_app, certfleet_operator;
