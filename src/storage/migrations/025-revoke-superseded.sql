-- Issue 21.6: a device renewal may leave the certificate it replaced to expire instead of
-- revoking it (renewal policy revoke_superseded; NULL: the default, true), so that with
-- short-lived certificates the CRL holds only real revocations. Each rotation row records
-- what its end does to the old certificate.
ALTER TABLE tenant_settings ADD COLUMN revoke_superseded boolean;
ALTER TABLE certificate_rotations ADD COLUMN revoke_old boolean NOT NULL DEFAULT true;
