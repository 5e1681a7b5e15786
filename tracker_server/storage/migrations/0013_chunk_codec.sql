-- Encoded chunks (tracker_server/domain/codec.py; docs/decisions/0003-chunk-encoding.md).
-- A chunk is stored either as its three arrays (encoding 0: every chunk written before
-- this migration, and rows inserted by hand) or as one codec payload (encoding 1,
-- about 6.6 bytes per point for the ingest bench's data instead of 24 plus array
-- headers), with its min/max sketch encoded the same way in sketch_payload.
-- Readers decode both layouts. Adding nullable columns, and a column with a constant
-- default, rewrites nothing; the CHECK validates with one scan that does not detoast.
-- One DO block: on Citus, DDL on the distributed metric_chunks is propagated to the
-- shards from the statement's text, which must then be a single statement.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        -- DDL of a distributed table and a distributed view in one transaction must not
        -- mix parallel and sequential connections to a worker.
        SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    END IF;
    ALTER TABLE metric_chunks
        ALTER COLUMN steps DROP NOT NULL,
        ALTER COLUMN "values" DROP NOT NULL,
        ALTER COLUMN wall_ns DROP NOT NULL,
        ADD COLUMN encoding smallint NOT NULL DEFAULT 0,
        ADD COLUMN payload bytea,
        ADD COLUMN sketch_payload bytea;

    ALTER TABLE metric_chunks ADD CONSTRAINT metric_chunks_layout CHECK (
        CASE WHEN encoding = 0 THEN
            payload IS NULL AND sketch_payload IS NULL
            AND steps IS NOT NULL AND "values" IS NOT NULL AND wall_ns IS NOT NULL
        ELSE
            encoding = 1 AND payload IS NOT NULL
            AND steps IS NULL AND "values" IS NULL AND wall_ns IS NULL
            AND sketch_steps IS NULL AND sketch_values IS NULL AND sketch_wall_ns IS NULL
        END);

    -- The view unnested the arrays; zstd payloads cannot be decoded in plain SQL, and a
    -- view that silently left out every chunk written from now on would be worse than
    -- none. Points are read with `tracker-server points` (CSV, or a session's temporary
    -- metric_points table with the same columns: tracker_server/storage/points_export.py).
    DROP VIEW metric_points;

    -- Payloads are already zstd-compressed: TOAST compression (pglz) would only cost CPU.
    -- Out of line when the row is big, inline otherwise (small chunks need no TOAST lookup).
    -- Citus refuses SET STORAGE on a distributed table (and running it on each shard
    -- from this transaction would wait for the locks the transaction holds), so on Citus
    -- the payloads keep the default: pglz gives up on incompressible bytes after the
    -- first kilobyte, a small CPU cost on the flush, never a different byte stored.
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT 1 FROM pg_dist_partition
                   WHERE logicalrelid = 'metric_chunks'::regclass) THEN
            RETURN;  -- the last statement of the migration
        END IF;
    END IF;
    ALTER TABLE metric_chunks
        ALTER COLUMN payload SET STORAGE EXTERNAL,
        ALTER COLUMN sketch_payload SET STORAGE EXTERNAL;

END
$$;
