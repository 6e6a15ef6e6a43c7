-- Issuance (issue 22 item 3): the device-summary trigger's incremental path (migration 032, an
-- insert of ACTIVE certificates) locks and updates each device of the inserted rows by its key,
-- one UPDATE per device in key order, instead of one lock statement and one UPDATE joining
-- device_registry with the transition table. The joins' plans are made once per connection, often
-- while device_registry has no statistics (a new deployment, the bench): then Postgres estimates
-- two devices per tenant and plans a nested loop whose inner side is a bitmap scan of the whole
-- tenant (the row-level security qual, tenant_id = current_setting(...), its only index
-- condition), every device of the tenant, live and dead versions, read once per inserted device:
-- 1,952 device rows read for a group of 4 certificates in a 400-device tenant
-- (test/device-summary-reads.test.ts), and with pgbench (groups of 8 certificates, 100 devices,
-- one client) 127-153 groups/s against 243-289 with this version. An UPDATE whose condition sets
-- both key columns to parameters is a probe of the primary key whatever the statistics
-- (8 device rows read for the 4 certificates).
--
-- Why it stays exact (migration 032's argument): each UPDATE locks its device row, in key order
-- (the order migration 032's PERFORM ... ORDER BY ... FOR NO KEY UPDATE took them, so the lock order
-- across transactions is unchanged), and in READ COMMITTED adds to the row's latest committed
-- version (a concurrent change waits for the lock, then the update is applied to its result).
-- The device-count trigger on device_registry now fires once per device instead of once per group;
-- it changes nothing for an update that keeps tenant_id and device_id. Every other path (an insert
-- with a row not ACTIVE, an update, a delete) is unchanged.
CREATE OR REPLACE FUNCTION certfleet_certificates_summary() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE keys jsonb;
        only_active boolean := false;
        r record;
BEGIN
  -- (nested: new_rows does not exist in a delete's trigger, and the condition is one query)
  IF TG_OP = 'INSERT' THEN
    only_active := NOT EXISTS (SELECT 1 FROM new_rows WHERE status <> 'ACTIVE');
  END IF;
  IF only_active THEN
    FOR r IN SELECT tenant_id, device_id, count(*)::int AS added, min(not_after) AS soonest
             FROM new_rows GROUP BY tenant_id, device_id ORDER BY tenant_id, device_id LOOP
      UPDATE device_registry d
      SET cert_status = 'ACTIVE',
          active_certificates = d.active_certificates + r.added,
          next_expiry = LEAST(d.next_expiry, r.soonest)
      WHERE d.tenant_id = r.tenant_id AND d.device_id = r.device_id;
    END LOOP;
    RETURN NULL;
  END IF;
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
