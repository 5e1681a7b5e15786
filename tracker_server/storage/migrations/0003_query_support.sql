-- Read-side support for the query API (issue 4).

-- Params and tags are text; a filter such as `params.lr < 0.01` compares them as
-- numbers. A cast that fails would abort the whole query, so non-numeric text maps to
-- NULL instead (the comparison is then false). SQL-language and IMMUTABLE, so the
-- planner inlines it.
CREATE FUNCTION tracker_num(value text) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
    SELECT CASE
        WHEN value ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'
            THEN value::float8
        WHEN lower(btrim(value)) IN ('nan', 'inf', '+inf', '-inf', 'infinity', '+infinity',
                                     '-infinity')
            THEN value::float8
    END
$$;

-- SearchRuns with a param filter: the planner can hash-join the params of one key
-- instead of probing every run's params.
CREATE INDEX run_params_key_idx ON run_params (key, run_id) INCLUDE (value);

-- GetBestRuns / metric filters: the summaries of one key across runs.
CREATE INDEX run_metric_summary_key_idx ON run_metric_summary (key_id, run_id);
