-- Keyset pages of the audit log (newest first), per tenant and across tenants, with the console's filters.
CREATE INDEX audit_events_tenant_id ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_action ON audit_events (tenant_id, action, id);
CREATE INDEX audit_events_tenant_target ON audit_events (tenant_id, target_type, target_id, id);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
-- A tenant's certificates, newest first, without walking other tenants' rows (the console's keyset pages).
CREATE INDEX device_certificates_tenant_id ON device_certificates (tenant_id, id);
