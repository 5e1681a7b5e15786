-- Artifacts of runs (tracker_server/domain/artifacts.py): references to checkpoints,
-- models and data sets on shared storage, never the files. Keyed by run_id first like
-- every table that grows with runs, so it distributes with the runs (Citus).
CREATE TABLE run_artifacts (
    run_id        uuid        NOT NULL,
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

-- Citus schema mode (0011): run_artifacts distributed with the runs, co-located by run_id.
-- The foreign key is added afterwards (Citus accepts it only between co-located
-- distributed tables), inside the DO block on both backends: Citus propagates DDL on a
-- distributed table from the statement's text, which must then be a single statement.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'runs'::regclass) THEN
            SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
            PERFORM create_distributed_table('run_artifacts', 'run_id', colocate_with => 'runs');
        END IF;
    END IF;
    ALTER TABLE run_artifacts ADD CONSTRAINT run_artifacts_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs ON DELETE CASCADE;
END
$$;
