-- Citus schema mode (docs/scaling.md). Nothing happens unless the citus extension is
-- installed in this database: on a single PostgreSQL this migration is a no-op, and a
-- Citus cluster gets the same schema, distributed.
--
-- Every table that grows with runs or points is hash-distributed by run_id, co-located
-- with runs: all the rows of one run live in shards of the same worker, so the flush
-- transaction of a run (chunks + heads + summary + offsets), a run's reads and the joins
-- between a run's rows stay on one worker. Small tables (experiments, metric names, API
-- keys, server secrets) become reference tables: a copy on every node, so distributed
-- tables join and point foreign keys at them locally.
--
-- What Citus refuses, and what replaces it:
-- * a unique constraint without the distribution column: runs' UNIQUE (experiment_id,
--   run_key). A keyed run's run_id is derived from (experiment_id, run_key) (uuid v5,
--   tracker_server/storage/citus.py), so the primary key keeps one run per key; runs
--   distributed from before keep theirs and are found by key first (storage/run_store.py).
--   A plain index serves the lookup by key.
-- * foreign keys to or from a table that is not distributed yet: they are dropped first
--   and put back once both sides are distributed (co-located, on run_id) or reference
--   tables.
-- schema_migrations stays a local table of the coordinator: only migrate.py reads it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;
    -- DDL and data moves of several distributed tables in one transaction must not mix
    -- parallel and sequential connections to a worker; sequential is always allowed.
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

    ALTER TABLE run_params DROP CONSTRAINT run_params_run_id_fkey;
    ALTER TABLE run_tags DROP CONSTRAINT run_tags_run_id_fkey;
    ALTER TABLE runs DROP CONSTRAINT runs_experiment_id_fkey;
    ALTER TABLE runs DROP CONSTRAINT runs_experiment_id_run_key_key;

    PERFORM create_reference_table('experiments');
    PERFORM create_reference_table('metric_keys');
    PERFORM create_reference_table('api_keys');
    PERFORM create_reference_table('server_secrets');

    PERFORM create_distributed_table('runs', 'run_id');
    PERFORM create_distributed_table('run_params', 'run_id', colocate_with => 'runs');
    PERFORM create_distributed_table('run_tags', 'run_id', colocate_with => 'runs');
    PERFORM create_distributed_table('metric_chunks', 'run_id', colocate_with => 'runs');
    PERFORM create_distributed_table('run_metric_summary', 'run_id', colocate_with => 'runs');
    PERFORM create_distributed_table('metric_series_heads', 'run_id', colocate_with => 'runs');
    PERFORM create_distributed_table('writer_offsets', 'run_id', colocate_with => 'runs');

    ALTER TABLE runs ADD CONSTRAINT runs_experiment_id_fkey
        FOREIGN KEY (experiment_id) REFERENCES experiments ON DELETE CASCADE;
    ALTER TABLE run_params ADD CONSTRAINT run_params_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs ON DELETE CASCADE;
    ALTER TABLE run_tags ADD CONSTRAINT run_tags_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs ON DELETE CASCADE;
    CREATE INDEX runs_key_idx ON runs (experiment_id, run_key) WHERE run_key IS NOT NULL;
END
$$;
