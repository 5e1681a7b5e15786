-- Replaces 0003's tracker_num. A SQL-language body `CASE WHEN pg_input_is_valid(...)
-- THEN value::float8 END` is not safe: PostgreSQL may plan the function body with the
-- argument as a constant and fold the cast before the CASE guard runs, so 'big' raised
-- "invalid input syntax" instead of giving NULL. PL/pgSQL evaluates the guard first.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'pg_input_is_valid') THEN
        CREATE OR REPLACE FUNCTION tracker_num(value text) RETURNS float8
        LANGUAGE plpgsql STABLE PARALLEL SAFE STRICT AS $f$
        BEGIN
            IF pg_input_is_valid(value, 'float8') THEN
                RETURN value::float8;
            END IF;
            RETURN NULL;
        END
        $f$;
    END IF;
END
$$;
