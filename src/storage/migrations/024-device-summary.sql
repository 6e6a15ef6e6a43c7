-- Per-device certificate summary (issue 25, device list at 100,000 devices): each device row
-- carries its certificates' state, kept exact by triggers in the transaction that changes a
-- certificate or a rotation, so the device list filters and sorts on the device rows alone
-- (never a probe of each device's certificates, whatever the table statistics say).
--
--   cert_status          ACTIVE if one of its certificates is, else EXPIRED, else REVOKED, else NONE
--   next_expiry          the soonest not_after of its ACTIVE certificates (null without one)
--   active_certificates  how many of its certificates are ACTIVE
--   pending_rotations    how many of its rotations are PENDING
ALTER TABLE device_registry
  ADD COLUMN cert_status text NOT NULL DEFAULT 'NONE' CHECK (cert_status IN ('ACTIVE', 'EXPIRED', 'REVOKED', 'NONE')),
  ADD COLUMN next_expiry timestamptz,
  ADD COLUMN active_certificates integer NOT NULL DEFAULT 0,
  ADD COLUMN pending_rotations integer NOT NULL DEFAULT 0;

-- Recomputes the summary of the given devices (jsonb [{tenant_id, device_id}], distinct). The
-- device rows are locked first, in key order (FOR NO KEY UPDATE: it does not conflict with the
-- foreign-key checks of concurrent issuance), and only then is the summary read, by a new
-- statement, so it sees every change committed by a transaction that held the row before: the
-- last transaction to lock a device writes its summary from every committed change plus its own.
-- The storage layer takes the device rows before the certificate rows wherever it can (revoke,
-- expiry tick, scheduled revocations), so this lock is usually held already.
CREATE FUNCTION certfleet_refresh_device_summaries(keys jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM device_registry d
    JOIN jsonb_to_recordset(keys) AS k(tenant_id text, device_id text) ON d.tenant_id = k.tenant_id AND d.device_id = k.device_id
    ORDER BY d.tenant_id, d.device_id
    FOR NO KEY UPDATE OF d;
  UPDATE device_registry d
  SET cert_status = s.cert_status, next_expiry = s.next_expiry, active_certificates = s.active_certificates, pending_rotations = s.pending_rotations
  FROM (
    SELECT k.tenant_id, k.device_id,
           CASE WHEN c.active > 0 THEN 'ACTIVE' WHEN c.expired THEN 'EXPIRED' WHEN c.revoked THEN 'REVOKED' ELSE 'NONE' END AS cert_status,
           c.next_expiry, c.active AS active_certificates, r.pending AS pending_rotations
    FROM jsonb_to_recordset(keys) AS k(tenant_id text, device_id text)
    CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE x.status = 'ACTIVE')::int AS active,
             min(x.not_after) FILTER (WHERE x.status = 'ACTIVE') AS next_expiry,
             coalesce(bool_or(x.status = 'EXPIRED'), false) AS expired,
             coalesce(bool_or(x.status = 'REVOKED'), false) AS revoked
      FROM device_certificates x WHERE x.tenant_id = k.tenant_id AND x.device_id = k.device_id) c
    CROSS JOIN LATERAL (
      SELECT count(*)::int AS pending FROM certificate_rotations y
      WHERE y.tenant_id = k.tenant_id AND y.device_id = k.device_id AND y.status = 'PENDING') r
  ) s
  WHERE d.tenant_id = s.tenant_id AND d.device_id = s.device_id
    AND (d.cert_status, d.next_expiry, d.active_certificates, d.pending_rotations)
        IS DISTINCT FROM (s.cert_status, s.next_expiry, s.active_certificates, s.pending_rotations);
END $$;

-- Certificates: an insert or a delete changes its device; an update only when the status,
-- the expiry or the owner changes (a touch of updated_at locks nothing).
CREATE FUNCTION certfleet_certificates_summary() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE keys jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO keys FROM (SELECT DISTINCT tenant_id, device_id FROM new_rows) x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO keys FROM (SELECT DISTINCT tenant_id, device_id FROM old_rows) x;
  ELSE
    SELECT jsonb_agg(x) INTO keys FROM (
      SELECT n.tenant_id, n.device_id FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE (n.status, n.not_after, n.tenant_id, n.device_id) IS DISTINCT FROM (o.status, o.not_after, o.tenant_id, o.device_id)
      UNION
      SELECT o.tenant_id, o.device_id FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE (n.tenant_id, n.device_id) IS DISTINCT FROM (o.tenant_id, o.device_id)) x;
  END IF;
  IF keys IS NOT NULL THEN PERFORM certfleet_refresh_device_summaries(keys); END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION certfleet_rotations_summary() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE keys jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO keys FROM (SELECT DISTINCT tenant_id, device_id FROM new_rows WHERE status = 'PENDING') x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO keys FROM (SELECT DISTINCT tenant_id, device_id FROM old_rows WHERE status = 'PENDING') x;
  ELSE
    SELECT jsonb_agg(x) INTO keys FROM (
      SELECT n.tenant_id, n.device_id FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE (n.status = 'PENDING') <> (o.status = 'PENDING') OR (n.tenant_id, n.device_id) IS DISTINCT FROM (o.tenant_id, o.device_id)
      UNION
      SELECT o.tenant_id, o.device_id FROM new_rows n JOIN old_rows o ON o.id = n.id
      WHERE (n.tenant_id, n.device_id) IS DISTINCT FROM (o.tenant_id, o.device_id)) x;
  END IF;
  IF keys IS NOT NULL THEN PERFORM certfleet_refresh_device_summaries(keys); END IF;
  RETURN NULL;
END $$;

DO $$
DECLARE t text[];
BEGIN
  FOREACH t SLICE 1 IN ARRAY ARRAY[['device_certificates', 'certfleet_certificates_summary'], ['certificate_rotations', 'certfleet_rotations_summary']] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_summary_insert', t[1], t[2]);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_summary_update', t[1], t[2]);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_summary_delete', t[1], t[2]);
  END LOOP;
END $$;

-- The devices already there. The migration's transaction holds the tables' locks, so nothing
-- changes between this reading and the triggers taking over.
LOCK TABLE device_registry, device_certificates, certificate_rotations IN SHARE ROW EXCLUSIVE MODE;
SELECT certfleet_refresh_device_summaries(jsonb_agg(x)) FROM (SELECT tenant_id, device_id FROM device_registry) x HAVING count(*) > 0;

-- The list's indexes. Every filter column is a key column (not INCLUDE): a condition on it is
-- checked on the index entry, so a page or a capped count reads the heap only for the devices
-- it returns. A filtered column leads, then tenant_id and device_id: for one tenant (equal on
-- both) and for every tenant (operators: equal on the first) the index gives the list's order.
-- By device id (byte order) within a tenant, and by device id across tenants (an id prefix):
DROP INDEX device_registry_tenant_device_c;
CREATE INDEX device_registry_tenant_device_c ON device_registry
  (tenant_id, device_id COLLATE "C", cert_status, next_expiry, pending_rotations, site_id);
CREATE INDEX device_registry_device_c ON device_registry
  (device_id COLLATE "C", tenant_id, cert_status, next_expiry, pending_rotations, site_id);
-- Within a site, a device status, a pending rotation:
DROP INDEX device_registry_tenant_site;
CREATE INDEX device_registry_tenant_site ON device_registry
  (site_id, tenant_id, device_id COLLATE "C", cert_status, next_expiry, pending_rotations);
CREATE INDEX device_registry_tenant_status ON device_registry
  (cert_status, tenant_id, device_id COLLATE "C", next_expiry, pending_rotations, site_id);
CREATE INDEX device_registry_tenant_pending ON device_registry
  (tenant_id, device_id COLLATE "C", cert_status, next_expiry, site_id) WHERE pending_rotations > 0;
-- By the soonest ACTIVE expiry: a tenant's, and every tenant's (operators).
CREATE INDEX device_registry_tenant_expiry ON device_registry
  (tenant_id, next_expiry, device_id COLLATE "C", pending_rotations, site_id) WHERE next_expiry IS NOT NULL;
CREATE INDEX device_registry_expiry ON device_registry
  (next_expiry, tenant_id, device_id COLLATE "C", pending_rotations, site_id) WHERE next_expiry IS NOT NULL;

-- The certificate indexes that only the per-device probes of the list used (migration 015).
DROP INDEX device_certificates_tenant_active_expiry_device;
DROP INDEX device_certificates_active_expiry_all;
DROP INDEX device_certificates_device_active_expiry;
DROP INDEX device_certificates_device_status;
