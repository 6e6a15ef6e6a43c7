-- CRL scope: a CA's CRL lists only that CA's revoked certificates. The read walks this index in
-- exactly its order (issuer, then serial numerically: length, then text), so its plan never
-- depends on table statistics. Covering, so a vacuumed table is read by an index-only scan.
DROP INDEX IF EXISTS device_certificates_crl;
CREATE INDEX device_certificates_crl ON device_certificates (issuer, length(serial_number), serial_number)
  INCLUDE (revoked_at, revoked_reason, not_after) WHERE status = 'REVOKED';

-- One row per revocation not yet covered by a stored CRL: the revocation inserts it in its own
-- transaction, a CRL build deletes the rows it sees before it reads the entries. Rows left after a
-- crash mean "revocations committed after the latest CRL's read": the next start publishes.
CREATE TABLE crl_pending_revocations (
  issuer      text NOT NULL,
  revoked_at  timestamptz NOT NULL DEFAULT now()
);
GRANT INSERT ON crl_pending_revocations TO certfleet_app, certfleet_operator;
GRANT SELECT, DELETE ON crl_pending_revocations TO certfleet_operator;

-- The broker's file gets the same CRL (entries, number) without an Issuing Distribution Point: a
-- complete CRL that covers every certificate of the CA whatever CRL Distribution Point it carries.
-- `der` (served at the distribution point URL) keeps the IDP; the file variant is that TBS without
-- it, so only its signature is stored.
ALTER TABLE crl_state ADD COLUMN file_signature bytea;
