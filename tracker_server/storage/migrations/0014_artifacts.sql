-- Artifacts of runs (tracker_server/domain/artifacts.py): references to checkpoints,
-- models and data sets on shared storage, never the files. Keyed by run_id first like
-- every table that grows with runs, so it distributes with the runs (Citus).
CREATE TABLE run_artifacts (
    run_id        uuid        NOT NULL REFERENCES runs ON DELETE CASCADE,
    uri           text        NOT NULL CHECK (length(uri) > 0),
    -- NULL: an artifact without a step. step_key gives it a place in the key (and sorts
    -- it first), since a primary key column cannot be NULL.
    step          bigint,
    step_key      bigint      GENERATED ALWAYS AS (coalesce(step, -9223372036854775808)) STORED,
    kind          smallint    NOT NULL,                  -- tracker.v1.ArtifactKind
    size_bytes    bigint      CHECK (size_bytes >= 0),   -- NULL: unknown
    sha256        text        NOT NULL DEFAULT '',       -- '' when not computed
    metadata      jsonb       NOT NULL DEFAULT '{}',
    rank          integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    verify_state  smallint    NOT NULL DEFAULT 0,        -- tracker.v1.VerifyState
    verify_detail text        NOT NULL DEFAULT '',
    verified_at   timestamptz,
    PRIMARY KEY (run_id, step_key, uri)
);
