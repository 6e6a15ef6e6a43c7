-- Broker nodes and what their agents last reported (certfleet broker-agent). Operator-scoped
-- system table: no tenant data, no RLS, certfleet_app gets no grant.
CREATE TABLE broker_nodes (
  node              text PRIMARY KEY,
  kind              text NOT NULL CHECK (kind IN ('mosquitto', 'rabbitmq')),
  -- The CRL number of the bundle the node applied (for several CAs: the lowest of them).
  crl_number        bigint CHECK (crl_number >= 0),
  applied_at        timestamptz,
  reported_at       timestamptz NOT NULL,
  -- The last enforcement check (canary handshakes) and its result.
  checked_at        timestamptz,
  check_result      text CHECK (check_result IN ('passed', 'failed')),
  check_detail      text,
  -- The agent's last error (download, verification, reload), null when its last cycle succeeded.
  last_error        text,
  -- The canary certificates issued for this node (device_certificates ids, tenant 'certfleet').
  canary_valid_id   bigint,
  canary_revoked_id bigint,
  created_at        timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON broker_nodes TO certfleet_operator;
