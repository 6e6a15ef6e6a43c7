-- Issuance (issue 22 item 3): "does another device of the tenant hold this key?" (migration 017)
-- in at most two index probes, whatever the number of certificates the key already has. The
-- checks read `device_id <> $device`, which an index on (tenant_id, spki_sha256) answers by
-- visiting every certificate of the key and its heap row: a device that keeps its key across
-- renewals (a secure element, a CSR sent again) made each issuance slower than the last. With
-- device_id in the index, the checks ask for the first entry below the device and the first
-- above it (src/storage/repos/device-keys-repo.ts, certificates-repo.ts): each a descent of the
-- index that stops at once. Same number of indexes as before: this one replaces the other.
CREATE INDEX device_certificates_tenant_spki_device ON device_certificates (tenant_id, spki_sha256, device_id) WHERE spki_sha256 IS NOT NULL;
DROP INDEX device_certificates_tenant_spki;
