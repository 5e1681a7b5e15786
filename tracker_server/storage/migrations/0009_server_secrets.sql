-- Secrets every server process on this database must share (e.g. the key that signs
-- dashboard session cookies when TRACKER_HTTP_SESSION_SECRET is not set): created once
-- by whichever server needs it first, then read by all.
CREATE TABLE server_secrets (
    name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    value      bytea NOT NULL CHECK (length(value) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
