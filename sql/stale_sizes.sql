-- The sizes bulk/engine/stale.py chooses a stale search's route by, beside the
-- stamps per version (sql/stale_versions.sql): the planner's estimates of the
-- lines a type and a killmail hold.
SELECT (SELECT greatest(i.reltuples, 1)
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
