-- Defence in depth in the schema. Row-level security keeps a tenant's queries to its own
-- rows; these constraints make a row of one tenant unable to point at another tenant's row
-- at all, even through SQL as a superuser: every foreign key between tenant tables carries
-- tenant_id (and device_id where both rows belong to one device).

-- Existing data must already be consistent; a row that crosses tenants is named, not dropped.
DO $$
DECLARE bad bigint;
BEGIN
  SELECT count(*) INTO bad FROM certificate_rotations r
  WHERE NOT EXISTS (SELECT 1 FROM device_certificates c WHERE c.id = r.new_certificate_id AND c.tenant_id = r.tenant_id AND c.device_id = r.device_id)
     OR NOT EXISTS (SELECT 1 FROM device_certificates c WHERE c.id = r.old_certificate_id AND c.tenant_id = r.tenant_id AND c.device_id = r.device_id);
  IF bad > 0 THEN
    RAISE EXCEPTION 'migration 007: certificate_rotations rows that point at a certificate of another tenant or device: %; fix them, then migrate again', bad;
  END IF;
  SELECT count(*) INTO bad FROM notification_outbox o
  WHERE NOT EXISTS (SELECT 1 FROM notification_webhooks w WHERE w.id = o.webhook_id AND w.tenant_id = o.tenant_id);
  IF bad > 0 THEN
    RAISE EXCEPTION 'migration 007: notification_outbox rows that point at a webhook of another tenant: %; fix them, then migrate again', bad;
  END IF;
  SELECT count(*) INTO bad FROM fleet_alert a
  WHERE a.device_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM device_registry d WHERE d.tenant_id = a.tenant_id AND d.device_id = a.device_id);
  IF bad > 0 THEN
    RAISE EXCEPTION 'migration 007: fleet_alert rows that name a device their tenant does not have: %; fix them, then migrate again', bad;
  END IF;
END $$;

ALTER TABLE device_certificates ADD CONSTRAINT device_certificates_tenant_device_id UNIQUE (tenant_id, device_id, id);
ALTER TABLE certificate_rotations
  DROP CONSTRAINT certificate_rotations_new_certificate_id_fkey,
  DROP CONSTRAINT certificate_rotations_old_certificate_id_fkey,
  ADD CONSTRAINT certificate_rotations_new_certificate FOREIGN KEY (tenant_id, device_id, new_certificate_id)
    REFERENCES device_certificates (tenant_id, device_id, id),
  ADD CONSTRAINT certificate_rotations_old_certificate FOREIGN KEY (tenant_id, device_id, old_certificate_id)
    REFERENCES device_certificates (tenant_id, device_id, id);

ALTER TABLE notification_webhooks ADD CONSTRAINT notification_webhooks_tenant_id UNIQUE (tenant_id, id);
ALTER TABLE notification_outbox
  DROP CONSTRAINT notification_outbox_webhook_id_fkey,
  ADD CONSTRAINT notification_outbox_webhook FOREIGN KEY (tenant_id, webhook_id)
    REFERENCES notification_webhooks (tenant_id, id) ON DELETE CASCADE;

-- Alerts without a device (CRL, system) have device_id NULL, which the key does not check.
ALTER TABLE fleet_alert ADD CONSTRAINT fleet_alert_device FOREIGN KEY (tenant_id, device_id)
  REFERENCES device_registry (tenant_id, device_id);

-- The audit trail is append-only for the application: neither role may change or delete it.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM certfleet_app, certfleet_operator;
