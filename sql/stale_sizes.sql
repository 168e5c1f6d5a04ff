-- The sizes bulk/engine/stale.py chooses a stale search's route by: the stamps
-- of the book {book} at each of %(versions)s (a jsonb object version -> count),
-- and the planner's estimates of the lines a type and a killmail hold.
SELECT (SELECT coalesce(jsonb_object_agg(c.version, c.n), '{{}}'::jsonb)
        FROM (SELECT s.version, count(*) AS n
              FROM bulk_valuations AS s
              WHERE s.book = {book} AND s.version = ANY(%(versions)s::int8[])
              GROUP BY s.version) AS c) AS stamps,
       (SELECT greatest(i.reltuples, 1)
               / greatest(CASE WHEN st.n_distinct < 0
                               THEN -st.n_distinct * greatest(i.reltuples, 1)
                               ELSE st.n_distinct END, 1)
        FROM pg_class AS i
        LEFT JOIN pg_stats AS st
               ON st.tablename = 'killmail_items' AND st.attname = 'item_type_id'
              AND st.schemaname = ANY(current_schemas(false))
        WHERE i.oid = to_regclass('killmail_items')) AS lines_per_type,
       (SELECT greatest(i.reltuples, 1) / greatest(k.reltuples, 1)
        FROM pg_class AS i, pg_class AS k
        WHERE i.oid = to_regclass('killmail_items')
          AND k.oid = to_regclass('killmails')) AS lines_per_killmail
