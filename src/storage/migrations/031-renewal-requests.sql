-- Signed MQTT renewal and recovery requests seen (issue 21, item 7), as claim_requests keeps the
-- signed provisioning requests: a request (the presenting certificate and its request_id) is
-- accepted once, across restarts and across replicas on one database (it was a map in each
-- process). A row older than the signature window can no longer be replayed (signed_at is
-- refused first); the insert of the same certificate's next request removes it.
CREATE TABLE renewal_requests (
  tenant_id                text NOT NULL,
  certificate_fingerprint  text NOT NULL,
  request_id               text NOT NULL,
  signed_at                bigint NOT NULL,
  received_at              timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, certificate_fingerprint, request_id)
);

ALTER TABLE renewal_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE renewal_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON renewal_requests
  USING (tenant_id = current_setting('app.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('app.tenant_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON renewal_requests TO certfleet_app, certfleet_operator;
