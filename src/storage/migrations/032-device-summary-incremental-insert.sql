-- Issuance (issue 22 item 3): an insert of ACTIVE certificates updates its devices' summary
-- (migration 024) by the inserted rows alone, instead of re-reading every certificate of each
-- device. The profile of the issuance bench put the summary trigger at about half of the group
-- statement's execution, growing with the certificates a device has accumulated (all of them,
-- EXPIRED and REVOKED included, were counted again for each new one).
--
-- Why it stays exact: the device rows are locked first, in key order (as before); the UPDATE
-- that follows, a new statement, reads the device row's latest committed version (it holds the
-- lock), whose summary is exact for every committed change (each change of a device's
-- certificates updates it under the same lock). Inserting ACTIVE certificates only adds to that:
-- active_certificates grows by the rows inserted, the soonest ACTIVE expiry is the least of the
-- kept one and the new rows' (LEAST ignores a null: no ACTIVE certificate before), and the
-- status is ACTIVE. A concurrent full recompute (a revocation, the expiry tick) either ran
-- before this lock, without seeing these uncommitted rows, so adding them to its result is
-- right; or runs after this commit and sees them. An insert with any row not ACTIVE (an
-- imported expired or revoked certificate), an update and a delete recompute in full as before.
CREATE OR REPLACE FUNCTION certfleet_certificates_summary() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE keys jsonb;
        only_active boolean := false;
BEGIN
  -- (nested: new_rows does not exist in a delete's trigger, and the condition is one query)
  IF TG_OP = 'INSERT' THEN
    only_active := NOT EXISTS (SELECT 1 FROM new_rows WHERE status <> 'ACTIVE');
  END IF;
  IF only_active THEN
    PERFORM 1 FROM device_registry d
      JOIN (SELECT DISTINCT tenant_id, device_id FROM new_rows) k ON d.tenant_id = k.tenant_id AND d.device_id = k.device_id
      ORDER BY d.tenant_id, d.device_id
      FOR NO KEY UPDATE OF d;
    UPDATE device_registry d
    SET cert_status = 'ACTIVE',
        active_certificates = d.active_certificates + s.added,
        next_expiry = LEAST(d.next_expiry, s.soonest)
    FROM (SELECT tenant_id, device_id, count(*)::int AS added, min(not_after) AS soonest FROM new_rows GROUP BY tenant_id, device_id) s
    WHERE d.tenant_id = s.tenant_id AND d.device_id = s.device_id;
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

-- Lock order. A change of certificates takes its devices' rows (this summary trigger) and the
-- tenant's counter rows (migration 012's count trigger); a revocation, a rotation and the expiry
-- tick take the device row first, by their own statements. Postgres fires the triggers of one
-- event in the order of their names, and "count" sorted before "summary": an issuance took the
-- counters first, then waited for a device a concurrent revocation held, which in turn waited for
-- the counters: a deadlock, one side answered 500 (seen with issuances grouped by the group
-- commit racing revocations and rotations of the same devices, test/device-summary.test.ts).
-- Renamed so that the summary (device rows, in key order) always comes first.
ALTER TRIGGER device_certificates_count_insert ON device_certificates RENAME TO device_certificates_tally_insert;
ALTER TRIGGER device_certificates_count_update ON device_certificates RENAME TO device_certificates_tally_update;
ALTER TRIGGER device_certificates_count_delete ON device_certificates RENAME TO device_certificates_tally_delete;
