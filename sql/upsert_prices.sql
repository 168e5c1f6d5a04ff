-- Bulk upsert of market prices in one statement, so a file import is all or
-- nothing and each flush of a fetch leaves the table consistent. updated_at is
-- set on every row written; columns not named are left as they were.
-- Placeholders, built from the fixed column table in bulk/price_store.py:
--   {columns}  e.g. sell, volume
--   {arrays}   e.g. %(sell)s::float8[], %(volume)s::float8[]
--   {updates}  e.g. sell = excluded.sell, volume = excluded.volume
-- Parameters: %(type_ids)s int[], and one float8[] per column, all as long.
INSERT INTO market_prices AS mp (type_id, {columns}, updated_at)
SELECT u.*, localtimestamp
FROM unnest(%(type_ids)s::int[], {arrays}) AS u
ON CONFLICT (type_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at
