-- The type of killmails.updated_at, or no row when the table has no such column.
-- to_regclass resolves the name through search_path, as the UPDATE does, so
-- both look at the same table.
SELECT t.typname
FROM pg_attribute AS a
JOIN pg_type AS t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass('killmails')
  AND a.attname = 'updated_at'
  AND a.attnum > 0
  AND NOT a.attisdropped
