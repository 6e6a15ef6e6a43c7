-- List pages that stay fast at 100k+ rows per tenant (GET /certificates, /devices, /alerts).
--
-- 1. Keyset indexes: every page (newest first) is one index range scan that starts at the
--    cursor and stops after limit + 1 entries, whatever the cursor's depth and however many rows
--    other tenants have. Without them a page walked the primary key backwards and filtered out
--    other tenants' (and other statuses') rows one by one. The certificate indexes cover the
--    tenant and status filters and the expiry window, so those pages' ids are an index-only scan.
-- Same name and definition as the console's keyset index, so either migration creates it once.
CREATE INDEX IF NOT EXISTS device_certificates_tenant_id ON device_certificates (tenant_id, id);
CREATE INDEX device_certificates_tenant_status_id ON device_certificates (tenant_id, status, id) INCLUDE (not_after);
-- A device's pages use the unique index of 007 on (tenant_id, device_id, id).
-- `expiring_within_days`: the exact total counts this range (index-only), not the whole tenant.
CREATE INDEX device_certificates_tenant_active_expiry ON device_certificates (tenant_id, not_after) WHERE status = 'ACTIVE';
CREATE INDEX fleet_alert_tenant_id ON fleet_alert (tenant_id, id);

-- 2. Exact totals without counting: per tenant and status (certificates) and per tenant
--    (devices), maintained by statement triggers in the transaction that changes the rows, so a
--    total is exact and consistent with the page read in the same snapshot. Each count is
--    split over 8 shards (by certificate id, by device id hash) so concurrent issuance in one
--    tenant rarely waits on the same counter row; a statement updates its shards in key
--    order, so single-statement changes (issuance, revocation, the worker's bulk updates) do
--    not deadlock on them. A total is the sum of at most 24 rows.
CREATE TABLE tenant_row_counts (
  tenant_id  text NOT NULL,
  -- 'certificate:ACTIVE' | 'certificate:REVOKED' | 'certificate:EXPIRED' | 'device'
  kind       text NOT NULL,
  shard      smallint NOT NULL,
  n          bigint NOT NULL,
  PRIMARY KEY (tenant_id, kind, shard)
);

CREATE FUNCTION certfleet_apply_row_counts(deltas jsonb) RETURNS void LANGUAGE sql AS $$
  INSERT INTO tenant_row_counts AS t (tenant_id, kind, shard, n)
  SELECT d.tenant_id, d.kind, d.shard, d.n
  FROM jsonb_to_recordset(deltas) AS d(tenant_id text, kind text, shard smallint, n bigint)
  WHERE d.n <> 0
  ORDER BY d.tenant_id, d.kind, d.shard
  ON CONFLICT (tenant_id, kind, shard) DO UPDATE SET n = t.n + EXCLUDED.n
$$;

CREATE FUNCTION certfleet_count_certificates() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE deltas jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, 'certificate:' || status AS kind, (id % 8)::smallint AS shard, count(*) AS n
      FROM new_rows GROUP BY 1, 2, 3) x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, 'certificate:' || status AS kind, (id % 8)::smallint AS shard, -count(*) AS n
      FROM old_rows GROUP BY 1, 2, 3) x;
  ELSE
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, kind, shard, sum(n) AS n FROM (
        SELECT tenant_id, 'certificate:' || status AS kind, (id % 8)::smallint AS shard, 1 AS n FROM new_rows
        UNION ALL
        SELECT tenant_id, 'certificate:' || status, (id % 8)::smallint, -1 FROM old_rows) u
      GROUP BY 1, 2, 3 HAVING sum(n) <> 0) x;
  END IF;
  IF deltas IS NOT NULL THEN PERFORM certfleet_apply_row_counts(deltas); END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION certfleet_count_devices() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE deltas jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, 'device' AS kind, (hashtext(device_id) & 7)::smallint AS shard, count(*) AS n
      FROM new_rows GROUP BY 1, 2, 3) x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, 'device' AS kind, (hashtext(device_id) & 7)::smallint AS shard, -count(*) AS n
      FROM old_rows GROUP BY 1, 2, 3) x;
  ELSE
    SELECT jsonb_agg(x) INTO deltas FROM (
      SELECT tenant_id, kind, shard, sum(n) AS n FROM (
        SELECT tenant_id, 'device' AS kind, (hashtext(device_id) & 7)::smallint AS shard, 1 AS n FROM new_rows
        UNION ALL
        SELECT tenant_id, 'device', (hashtext(device_id) & 7)::smallint, -1 FROM old_rows) u
      GROUP BY 1, 2, 3 HAVING sum(n) <> 0) x;
  END IF;
  IF deltas IS NOT NULL THEN PERFORM certfleet_apply_row_counts(deltas); END IF;
  RETURN NULL;
END $$;

-- Transition tables cannot be combined with UPDATE OF <columns>: an UPDATE that changes no
-- counted column nets to no delta and writes nothing.
DO $$
DECLARE t text[];
BEGIN
  FOREACH t SLICE 1 IN ARRAY ARRAY[['device_certificates', 'certfleet_count_certificates'], ['device_registry', 'certfleet_count_devices']] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_count_insert', t[1], t[2]);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_count_update', t[1], t[2]);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION %I()',
                   t[1] || '_count_delete', t[1], t[2]);
  END LOOP;
END $$;

-- The rows already there. The migration's transaction holds the tables' locks, so nothing
-- changes between this count and the triggers taking over.
LOCK TABLE device_certificates, device_registry IN SHARE MODE;
INSERT INTO tenant_row_counts (tenant_id, kind, shard, n)
SELECT tenant_id, 'certificate:' || status, (id % 8)::smallint, count(*) FROM device_certificates GROUP BY 1, 2, 3;
INSERT INTO tenant_row_counts (tenant_id, kind, shard, n)
SELECT tenant_id, 'device', (hashtext(device_id) & 7)::smallint, count(*) FROM device_registry GROUP BY 1, 2, 3;

ALTER TABLE tenant_row_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_row_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_row_counts
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE ON tenant_row_counts TO certfleet_app, certfleet_operator;
