-- Incremental CRL publication: a revocation's pending mark names the certificate, so a build that
-- keeps the CA's previous entries in memory reads only the rows whose marks it takes (in the same
-- transaction as the take: every mark removed belongs to a revocation committed before that
-- statement's snapshot, so the next statement sees the row REVOKED). A mark without a serial (a
-- restore reconcile, a rebuild request, a revocation path that does not name it) asks for a full
-- rebuild from the database.
ALTER TABLE crl_pending_revocations ADD COLUMN serial_number text;
