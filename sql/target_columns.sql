-- The columns of the killboard tables as the catalog defines them, read once
-- per import or demo load: the tool fills the columns a target has beyond its
-- own schema (killreport's hashes, systems, timestamps...) and refuses, before
-- writing, a NOT NULL column it has nothing for. A column counts as having a
-- default when PostgreSQL fills it itself (DEFAULT, identity or generated).
-- Rows: (table, column, not_null, has_default).
SELECT c.relname::text,
       a.attname::text,
       a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
WHERE a.attrelid = ANY (ARRAY[
          to_regclass('categories'), to_regclass('item_groups'), to_regclass('types'),
          to_regclass('killmails'), to_regclass('victims'), to_regclass('killmail_items'),
          to_regclass('market_prices')
      ])
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
