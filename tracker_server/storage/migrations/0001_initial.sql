-- Initial schema. Every table that grows with points carries run_id in its key so it
-- can later be hash-partitioned by run (and distributed with Citus).

CREATE TABLE experiments (
    experiment_id uuid PRIMARY KEY,
    name          text        NOT NULL,
    owner         text        NOT NULL DEFAULT '',
    description   text        NOT NULL DEFAULT '',
    status        smallint    NOT NULL DEFAULT 1,   -- tracker.v1.ExperimentStatus
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);
CREATE INDEX experiments_created_idx ON experiments (created_at, experiment_id);

CREATE TABLE runs (
    run_id        uuid PRIMARY KEY,
    experiment_id uuid        NOT NULL REFERENCES experiments ON DELETE CASCADE,
    name          text        NOT NULL,
    run_key       text,
    status        smallint    NOT NULL DEFAULT 1,   -- tracker.v1.RunStatus
    attempt       integer     NOT NULL DEFAULT 0,
    seed          bigint,
    slurm_job_id  text        NOT NULL DEFAULT '',
    metadata      jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    UNIQUE (experiment_id, run_key)
);
CREATE INDEX runs_experiment_idx ON runs (experiment_id, created_at, run_id);

CREATE TABLE run_params (
    run_id uuid NOT NULL REFERENCES runs ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE TABLE run_tags (
    run_id uuid NOT NULL REFERENCES runs ON DELETE CASCADE,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (run_id, key)
);

-- Metric names, stored once; chunks reference key_id.
CREATE TABLE metric_keys (
    key_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name   text NOT NULL UNIQUE
);

-- One row per flushed (run, key, rank, attempt) buffer. Arrays rather than one row per
-- point: ~25 bytes/point instead of ~105, and ~10x the write rate (REFERENCE_FIGURES.md).
-- No foreign key to runs: the ingest path validates runs itself and an FK check per
-- chunk row costs throughput; run deletion removes chunks explicitly.
CREATE TABLE metric_chunks (
    run_id      uuid     NOT NULL,
    key_id      integer  NOT NULL,
    rank        integer  NOT NULL,
    attempt     integer  NOT NULL,
    chunk_id    bigint   GENERATED ALWAYS AS IDENTITY,
    first_step  bigint   NOT NULL,
    last_step   bigint   NOT NULL,
    n           integer  NOT NULL,
    steps       int8[]   NOT NULL,
    "values"    float8[] NOT NULL,
    wall_ns     int8[]   NOT NULL,
    PRIMARY KEY (run_id, key_id, rank, attempt, chunk_id)
);
CREATE INDEX metric_chunks_range_idx ON metric_chunks (run_id, key_id, first_step);

-- Per (run, key): maintained in the flush transaction so "best run", "latest value"
-- and run listings never scan points. min/max ignore NaN; last_* is the point with
-- the highest step (later attempt, then later write, wins a tie).
CREATE TABLE run_metric_summary (
    run_id       uuid    NOT NULL,
    key_id       integer NOT NULL,
    count        bigint  NOT NULL,
    first_step   bigint  NOT NULL,
    last_step    bigint  NOT NULL,
    last_value   float8  NOT NULL,
    last_attempt integer NOT NULL,
    last_wall_ns bigint  NOT NULL,
    min_value    float8,
    min_step     bigint,
    max_value    float8,
    max_step     bigint,
    PRIMARY KEY (run_id, key_id)
);

-- Exactly-once: the highest committed batch seq per writer, advanced in the same
-- transaction as the data it covers.
CREATE TABLE writer_offsets (
    run_id        uuid        NOT NULL,
    writer_id     text        NOT NULL,
    committed_seq bigint      NOT NULL DEFAULT 0,
    rank          integer     NOT NULL DEFAULT 0,
    attempt       integer     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, writer_id)
);

-- Readable with plain psql: one row per stored point (earlier attempts included).
CREATE VIEW metric_points AS
SELECT c.run_id, k.name AS key, c.rank, c.attempt, p.step, p.value, p.wall_ns
FROM metric_chunks c
JOIN metric_keys k USING (key_id)
CROSS JOIN LATERAL unnest(c.steps, c."values", c.wall_ns) AS p(step, value, wall_ns);
