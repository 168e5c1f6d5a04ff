-- Bulk upsert of market prices in one statement, run inside the caller's
-- transaction (a file import is all or nothing; each flush of a fetch leaves
-- the table consistent). Every row of one call gives the same columns; a
-- column not named keeps its value on an existing row and takes the column's
-- own default on a new one (0 on killreport, NULL on the tool's schema), so no
-- NULL is ever written into a price. updated_at is set on every row written.
-- Placeholders, built in bulk/prices/store.py from fixed names only:
--   {columns}  e.g. sell, volume
--   {arrays}   e.g. %(sell)s::float8[], %(volume)s::float8[]
--   {updates}  e.g. sell = excluded.sell, volume = excluded.volume
--   {stamps}   updated_at, or updated_at, created_at where created_at has no default
--   {stamp_values} localtimestamp once per name in {stamps}
-- Parameters: %(type_ids)s int[], and one float8[] per column, all as long.
INSERT INTO market_prices AS mp (type_id, {columns}, {stamps})
SELECT u.*, {stamp_values}
FROM unnest(%(type_ids)s::int[], {arrays}) AS u
ON CONFLICT (type_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at
