-- Per (run, key, rank): the latest attempt and that attempt's smallest and largest step
-- (tracker_server/domain/summary_rule.py). The flush reads it to tell an append, whose
-- summary delta merges into run_metric_summary, from a flush that can hide points (a
-- resumed attempt overlapping the previous one, a step logged again), after which the
-- (run, key) summary is recomputed from its chunks. Maintained in the flush transaction.
CREATE TABLE metric_series_heads (
    run_id     uuid    NOT NULL,
    key_id     integer NOT NULL,
    rank       integer NOT NULL,
    attempt    integer NOT NULL,
    first_step bigint  NOT NULL,
    last_step  bigint  NOT NULL,
    PRIMARY KEY (run_id, key_id, rank)
) WITH (fillfactor = 70);  -- room on the page: a flush's update stays HOT (no index write)

INSERT INTO metric_series_heads (run_id, key_id, rank, attempt, first_step, last_step)
SELECT DISTINCT ON (run_id, key_id, rank)
       run_id, key_id, rank, attempt, min(first_step), max(last_step)
FROM metric_chunks
GROUP BY run_id, key_id, rank, attempt
ORDER BY run_id, key_id, rank, attempt DESC;

-- A summary whose flush rewrote steps of the latest attempt: its delta was merged (the
-- last value is right, count/min/max may still include overwritten points) and the
-- background repair recomputes it (tracker_server/storage/summary_repair.py).
ALTER TABLE run_metric_summary ADD COLUMN stale boolean NOT NULL DEFAULT false;
CREATE INDEX run_metric_summary_stale_idx ON run_metric_summary (run_id, key_id) WHERE stale;

-- Summaries written before this migration counted superseded points of earlier attempts;
-- the repair recomputes those of keys logged by more than one attempt.
UPDATE run_metric_summary s SET stale = true
FROM (SELECT run_id, key_id FROM metric_chunks
      GROUP BY run_id, key_id HAVING count(DISTINCT attempt) > 1) m
WHERE s.run_id = m.run_id AND s.key_id = m.key_id;
