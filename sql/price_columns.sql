-- The columns of market_prices as the catalog defines them, read once per
-- import or fetch: which may be NULL, which have a default, and which
-- reference types (killreport's type_id does; the tool's own schema has no
-- foreign key). Rows: (name, not_null, has_default, references_types).
SELECT a.attname::text,
       a.attnotnull,
       a.atthasdef,
       EXISTS (
           SELECT 1
           FROM pg_constraint c
           WHERE c.contype = 'f'
             AND c.conrelid = a.attrelid
             AND a.attnum = ANY (c.conkey)
             AND c.confrelid = to_regclass('types')
       )
FROM pg_attribute a
WHERE a.attrelid = to_regclass('market_prices')
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum
