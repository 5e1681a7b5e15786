-- Read-side support for the query API (issue 4).

-- Params and tags are text; a filter such as `params.lr < 0.01` compares them as
-- numbers. A failing cast would abort the whole query, so text that is not a valid
-- float8 maps to NULL instead (the comparison is then false). PostgreSQL 16+ checks
-- validity with pg_input_is_valid (no subtransaction, inlinable SQL function); older
-- servers fall back to a regex pre-check plus an exception block for the rare
-- regex-valid but out-of-range input such as '1e999'. Detected, not assumed.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'pg_input_is_valid') THEN
        CREATE FUNCTION tracker_num(value text) RETURNS float8
        LANGUAGE sql STABLE PARALLEL SAFE STRICT AS $f$
            SELECT CASE WHEN pg_input_is_valid(value, 'float8') THEN value::float8 END
        $f$;
    ELSE
        CREATE FUNCTION tracker_num(value text) RETURNS float8
        LANGUAGE plpgsql STABLE PARALLEL SAFE STRICT AS $f$
        BEGIN
            IF value !~* '^\s*([-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(nan|inf|infinity))\s*$' THEN
                RETURN NULL;
            END IF;
            RETURN value::float8;
        EXCEPTION WHEN numeric_value_out_of_range THEN
            RETURN NULL;
        END
        $f$;
    END IF;
END
$$;

-- SearchRuns with a param filter: the planner can scan the params of one key
-- (index-only, value included) instead of probing every run's params.
CREATE INDEX run_params_key_idx ON run_params (key, run_id) INCLUDE (value);

-- GetBestRuns / metric filters: the summaries of one key across runs.
CREATE INDEX run_metric_summary_key_idx ON run_metric_summary (key_id, run_id);
