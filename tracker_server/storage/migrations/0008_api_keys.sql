-- API keys (tracker_server/domain/access.py): only SHA-256 of the key is stored; the key
-- itself is printed once by `tracker-server keys create`. Revoked keys stay for audit.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{12}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
