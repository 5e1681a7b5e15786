-- User summaries and metric goals (ExperimentService.SetSummary / DefineMetrics).
-- run.summary["test/acc"] = 0.93 sets a value the user chose, beside the summaries the
-- flush maintains from points (run_metric_summary); define_metric("val/acc", goal="max")
-- records which direction is better, so rankings need no mode from the caller.
-- Both are keyed by run_id first, like every per-run table (hash-distributable by run).
CREATE TABLE run_user_summary (
    run_id     uuid NOT NULL,
    key        text NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    value      float8 NOT NULL,  -- NaN and +-Infinity are stored exactly
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_metric_goals (
    run_id uuid NOT NULL,
    key    text NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    goal   text NOT NULL CHECK (goal IN ('min', 'max')),
    PRIMARY KEY (run_id, key)
);
-- GetBestRuns without a goal looks up the goals its candidate runs defined for one key.
CREATE INDEX run_metric_goals_key_idx ON run_metric_goals (key, run_id);

-- Citus schema mode (0011): both tables distributed with the runs, co-located by run_id.
-- The foreign key is added afterwards (Citus accepts it only between co-located
-- distributed tables), inside the DO block on both backends: Citus propagates DDL on a
-- distributed table from the statement's text, which must then be a single statement.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'runs'::regclass) THEN
            SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
            PERFORM create_distributed_table('run_user_summary', 'run_id', colocate_with => 'runs');
            PERFORM create_distributed_table('run_metric_goals', 'run_id', colocate_with => 'runs');
        END IF;
    END IF;
    ALTER TABLE run_user_summary ADD CONSTRAINT run_user_summary_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs ON DELETE CASCADE;
    ALTER TABLE run_metric_goals ADD CONSTRAINT run_metric_goals_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs ON DELETE CASCADE;
END
$$;
