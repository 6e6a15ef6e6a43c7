-- Each revoked certificate keeps its CRL entry, DER-encoded (the served variant: with the
-- reasonCode extension when the reason is not unspecified), filled by the revoking statement
-- itself (a BEFORE trigger: every path that revokes, restores or re-reasons a certificate). A full
-- CRL build then reads the stored entries as binary COPY rows and sorts them
-- (src/storage/repos/crl-repo.ts) instead of turning a million rows into texts, strings and
-- entries; the broker file's variant strips the extension as before.
--
-- Safe on a table of millions of rows: the column is added without a default (no rewrite) and no
-- existing row is updated here. Rows revoked before this migration keep NULL and are encoded by
-- the build as before (the read hands them over as texts); so does any row the function does not
-- encode (not plain ASCII reason text, serial not hex, a year outside 1950-2049: UTCTime only):
-- NULL means "encode it in the application", never "not on the CRL". The reason texts map as
-- src/domain/revocation-reasons.ts maps them (test/crl-entry-der.test.ts compares both), and
-- removeFromCRL as unspecified (a full CRL, publish-crl.ts). RLS is unchanged (a column of a
-- table that has it).
CREATE FUNCTION certfleet_crl_reason_code(reason text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE lower(regexp_replace(coalesce(reason, ''), '[[:space:]_-]+', '', 'g'))
    WHEN 'keycompromise' THEN 1 WHEN 'compromised' THEN 1
    WHEN 'cacompromise' THEN 2
    WHEN 'affiliationchanged' THEN 3
    WHEN 'superseded' THEN 4 WHEN 'rotated' THEN 4 WHEN 'rotation' THEN 4
    WHEN 'cessationofoperation' THEN 5 WHEN 'decommissioned' THEN 5
    WHEN 'certificatehold' THEN 6
    WHEN 'privilegewithdrawn' THEN 9
    WHEN 'aacompromise' THEN 10
    ELSE 0 END
$$;

-- SEQUENCE { INTEGER serial, UTCTime revocationDate, [Extensions { reasonCode }] }, or NULL when not encodable here.
CREATE FUNCTION certfleet_crl_entry_der(serial text, revoked_at timestamptz, reason text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  hex text;
  content bytea;
  code int;
  body bytea;
BEGIN
  IF serial IS NULL OR revoked_at IS NULL OR serial !~ '^[0-9a-fA-F]{1,64}$' OR (reason IS NOT NULL AND reason !~ '^[\x01-\x7f]*$')
     OR revoked_at < '1950-01-01T00:00:00Z' OR revoked_at >= '2050-01-01T00:00:00Z' THEN
    RETURN NULL;
  END IF;
  hex := ltrim(lower(serial), '0');
  IF length(hex) > 40 THEN RETURN NULL; END IF;
  IF hex = '' THEN
    content := '\x00'::bytea;
  ELSE
    IF length(hex) % 2 = 1 THEN hex := '0' || hex; END IF;
    content := decode(hex, 'hex');
    IF get_byte(content, 0) >= 128 THEN content := '\x00'::bytea || content; END IF;
  END IF;
  code := certfleet_crl_reason_code(reason);
  body := '\x02'::bytea || set_byte('\x00'::bytea, 0, length(content)) || content
    || '\x170d'::bytea || convert_to(to_char(revoked_at AT TIME ZONE 'UTC', 'YYMMDDHH24MISS') || 'Z', 'SQL_ASCII');
  IF code <> 0 THEN
    body := body || '\x300c300a0603551d1504030a01'::bytea || set_byte('\x00'::bytea, 0, code);
  END IF;
  RETURN '\x30'::bytea || set_byte('\x00'::bytea, 0, length(body)) || body;
END $$;

ALTER TABLE device_certificates ADD COLUMN crl_entry bytea;

CREATE FUNCTION certfleet_certificates_crl_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.crl_entry := CASE WHEN NEW.status = 'REVOKED' THEN certfleet_crl_entry_der(NEW.serial_number, NEW.revoked_at, NEW.revoked_reason) END;
  RETURN NEW;
END $$;

CREATE TRIGGER device_certificates_crl_entry
  BEFORE INSERT OR UPDATE OF status, revoked_at, revoked_reason, serial_number, crl_entry ON device_certificates
  FOR EACH ROW EXECUTE FUNCTION certfleet_certificates_crl_entry();
