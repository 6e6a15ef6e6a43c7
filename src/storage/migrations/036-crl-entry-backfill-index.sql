-- The revoked rows without a stored CRL entry (revoked before migration 035, or declined by its SQL
-- encoder): the crl-entry-backfill task (app/backfill-crl-entries.ts) finds them here, in batches
-- by id, so a CRL of revocations older than 035 is read through the stored entries too once the
-- task has passed. Small once the backfill is done (only the rows the SQL encoder declines stay).
-- Built in the migration's transaction (writes to device_certificates wait meanwhile).
CREATE INDEX device_certificates_crl_entry_missing ON device_certificates (id) WHERE status = 'REVOKED' AND crl_entry IS NULL;
