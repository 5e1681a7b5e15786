-- Min/max sketches of big chunks (see tracker_server/domain/sketch.py): per sub-bucket of
-- 64 points its minimum and maximum point, plus the chunk's first and last point, in
-- arrival order; about 2/64 of the chunk. Downsampled reads of long ranges read these
-- instead of the full arrays. NULL for chunks below 512 points, chunks whose steps do not
-- strictly increase, chunks merged by the compactor, and chunks written before this
-- migration: those are read raw. Adding nullable columns without a default rewrites
-- nothing.
ALTER TABLE metric_chunks
    ADD COLUMN sketch_steps   int8[],
    ADD COLUMN sketch_values  float8[],
    ADD COLUMN sketch_wall_ns int8[];

-- Same storage choice as the point arrays (migration 0002): lz4 where the server has it,
-- otherwise no compression (pglz on random-looking floats costs write throughput).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE metric_chunks ALTER COLUMN sketch_steps SET COMPRESSION lz4;
        ALTER TABLE metric_chunks ALTER COLUMN sketch_values SET COMPRESSION lz4;
        ALTER TABLE metric_chunks ALTER COLUMN sketch_wall_ns SET COMPRESSION lz4;
    ELSE
        ALTER TABLE metric_chunks ALTER COLUMN sketch_steps SET STORAGE EXTERNAL;
        ALTER TABLE metric_chunks ALTER COLUMN sketch_values SET STORAGE EXTERNAL;
        ALTER TABLE metric_chunks ALTER COLUMN sketch_wall_ns SET STORAGE EXTERNAL;
    END IF;
END
$$;
