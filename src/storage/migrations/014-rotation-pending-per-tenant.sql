-- The one-pending-rotation index names the tenant: keyed on the certificate id alone, a
-- tenant inserting a rotation for another tenant's certificate id got "duplicate" (23505)
-- before the tenant-scoped foreign key could refuse it (23503), which told it that the other
-- tenant's certificate has a pending rotation. Same rule within a tenant (certificate ids are
-- global, so no existing row can conflict).
DROP INDEX certificate_rotations_one_pending;
CREATE UNIQUE INDEX certificate_rotations_one_pending ON certificate_rotations (tenant_id, old_certificate_id) WHERE status = 'PENDING';
