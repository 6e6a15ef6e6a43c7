-- Browser sessions: the cookie carries an opaque id; only its SHA-256 is stored, with the
-- SHA-256 of the session's CSRF token and the principal it was started for.
-- Not a tenant table (operators have sessions too): only certfleet_operator reaches it.
CREATE TABLE browser_sessions (
  id_sha256   text PRIMARY KEY,
  csrf_sha256 text NOT NULL,
  subject     text NOT NULL,
  tenant_id   text,
  roles       text[] NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);
GRANT SELECT, INSERT, DELETE ON browser_sessions TO certfleet_operator;
