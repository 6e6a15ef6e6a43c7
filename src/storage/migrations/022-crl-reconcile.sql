-- Disaster recovery: after a restore from an older backup the database may not hold revocations
-- an earlier CRL (the broker's file, an operator-given CRL) carried. At start the publisher
-- re-marks those certificates revoked; a revoked serial the restored database does not know at
-- all is kept here, so every later CRL of its CA still lists it (nothing ever un-revokes).
-- System table without tenant data (no RLS): the operator role manages it, certfleet_app may only
-- read it (an import of such a certificate is refused: it is revoked).
CREATE TABLE crl_restored_entries (
  issuer          text NOT NULL,
  serial_number   text NOT NULL,
  revoked_at      timestamptz NOT NULL,
  revoked_reason  text NOT NULL,
  -- The CRL that carried it: its number and issuer key id.
  source_crl_number bigint NOT NULL,
  restored_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (issuer, serial_number)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON crl_restored_entries TO certfleet_operator;
GRANT SELECT ON crl_restored_entries TO certfleet_app;

-- The highest CRL number seen anywhere (a reconciled CRL, the broker's file): the next CRL is
-- numbered above it even if the stored one is older (a restored database).
ALTER TABLE crl_state ADD COLUMN number_floor bigint NOT NULL DEFAULT 0 CHECK (number_floor >= 0);
