-- The latest CRL of each Device CA (keyed by the CA's key identifier). One row per CA; the
-- publisher locks it (SELECT ... FOR UPDATE) for the whole build, which serialises replicas
-- and keeps crl_number strictly increasing. System table: operator role only (no RLS, and
-- certfleet_app gets no grant).
CREATE TABLE crl_state (
  issuer_key_id  text PRIMARY KEY,
  crl_number     bigint NOT NULL DEFAULT 0 CHECK (crl_number >= 0),
  this_update    timestamptz,
  next_update    timestamptz,
  der            bytea,
  sha256         text,
  entries        integer,
  -- Database time when the build began: every revocation committed before it is in the CRL.
  built_at       timestamptz,
  published_at   timestamptz
);
-- A CRL is signed, high-entropy data: skip TOAST compression (tens of MB at a million entries).
ALTER TABLE crl_state ALTER COLUMN der SET STORAGE EXTERNAL;
GRANT SELECT, INSERT, UPDATE ON crl_state TO certfleet_operator;

-- The CRL reads revoked certificates in serial order (hex without leading zeros: length, then
-- text). Covering, so a large CRL is an index-only scan instead of a random heap read per row.
DROP INDEX IF EXISTS device_certificates_revoked;
CREATE INDEX device_certificates_crl ON device_certificates (length(serial_number), serial_number)
  INCLUDE (revoked_at, revoked_reason, not_after) WHERE status = 'REVOKED';
