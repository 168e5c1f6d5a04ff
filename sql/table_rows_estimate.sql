-- The planner's row estimate of a table (pg_class.reltuples): instant, and
-- good enough to decide whether counting exactly is affordable.
-- Parameters: %(table)s text. -1 when the table was never analyzed.
SELECT coalesce((SELECT reltuples::bigint FROM pg_class
                 WHERE oid = to_regclass(%(table)s)), -1)
