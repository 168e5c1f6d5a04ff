-- Whether killmail_items has a btree index led by item_type_id (killreport has
-- one): then the used types are read by skipping through it, one probe per
-- distinct type, instead of reading every line.
SELECT EXISTS (
    SELECT 1
    FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    JOIN pg_class ix ON ix.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ix.relam
    WHERE i.indrelid = to_regclass('killmail_items')
      AND a.attname = 'item_type_id'
      AND am.amname = 'btree'
      AND i.indpred IS NULL
)
