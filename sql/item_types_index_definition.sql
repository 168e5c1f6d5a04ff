-- The definition of the index sql/item_types_index.sql makes, if there is one by
-- that name on killmail_items (NULL otherwise): demo-data drops and rebuilds only
-- an index defined exactly so, and on an empty table.
SELECT (SELECT pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indexrelid = to_regclass('killmail_items_item_type_id_idx')
          AND i.indrelid = to_regclass('killmail_items')
          AND i.indpred IS NULL)
