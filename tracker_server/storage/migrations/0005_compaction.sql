-- Low-frequency logging (many runs, a point per key per second) makes one-point chunks:
-- each costs a row header, an index entry and three array headers. The compactor merges
-- them; this partial index lets it find small chunks without scanning the big ones.
-- "Small" is fixed here (n < 512); the compactor's threshold cannot exceed it.
CREATE INDEX metric_chunks_small_idx ON metric_chunks (run_id, key_id, rank, attempt, chunk_id)
    WHERE n < 512;
