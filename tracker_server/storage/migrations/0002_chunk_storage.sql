-- Chunk arrays are random-looking floats: pglz compression costs ~5x write throughput
-- for little gain. Use lz4 where the server was built with it, otherwise store the
-- arrays uncompressed out of line (STORAGE EXTERNAL). Detected, not assumed: the
-- embedded PostgreSQL wheel has no lz4.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE metric_chunks ALTER COLUMN steps SET COMPRESSION lz4;
        ALTER TABLE metric_chunks ALTER COLUMN "values" SET COMPRESSION lz4;
        ALTER TABLE metric_chunks ALTER COLUMN wall_ns SET COMPRESSION lz4;
    ELSE
        ALTER TABLE metric_chunks ALTER COLUMN steps SET STORAGE EXTERNAL;
        ALTER TABLE metric_chunks ALTER COLUMN "values" SET STORAGE EXTERNAL;
        ALTER TABLE metric_chunks ALTER COLUMN wall_ns SET STORAGE EXTERNAL;
    END IF;
END
$$;
