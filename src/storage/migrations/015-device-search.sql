-- Device search for fleets of 100,000 (issue 25): id prefix, site, and the soonest expiry first.
--
-- Device pages are ordered by device_id in byte order (COLLATE "C", whatever the database's
-- collation): an id prefix is then one index range [prefix, prefix with its last character + 1).
CREATE INDEX device_registry_tenant_device_c ON device_registry (tenant_id, device_id COLLATE "C");
-- A site's devices, in the same order: the site is a constant in the range, the order comes free.
CREATE INDEX device_registry_tenant_site ON device_registry (tenant_id, site_id, device_id COLLATE "C");
-- Devices by their soonest ACTIVE certificate expiry: a tenant's, and every tenant's (operators).
CREATE INDEX device_certificates_tenant_active_expiry_device ON device_certificates (tenant_id, not_after, device_id) WHERE status = 'ACTIVE';
CREATE INDEX device_certificates_active_expiry_all ON device_certificates (not_after, tenant_id, device_id) WHERE status = 'ACTIVE';
-- A device's soonest ACTIVE certificate: one index probe per listed device (the expiry order keeps only that one).
CREATE INDEX device_certificates_device_active_expiry ON device_certificates (tenant_id, device_id, not_after, id) WHERE status = 'ACTIVE';
-- "Has a certificate of this status" for a device: one probe on all three equalities (never a
-- walk of the tenant's status or expiry range, whatever the statistics).
CREATE INDEX device_certificates_device_status ON device_certificates (tenant_id, device_id, status) INCLUDE (not_after);
