-- Every type's unit price in integer cents, resolved once per connection into
-- a TEMP table that each batch's load then joins as one int8 column. Rounding
-- a price to the cent in numeric and joining three category tables cost more,
-- done for every line, than all the rest of a batch together (issue 15).
--
-- Placeholders filled from fixed tables in bulk/engine/modes.py, never user text:
--   {table}         the TEMP table's name, one per price column
--   {price_column}  sell | buy | average
--
-- Columns:
--   cents      round(price::numeric, 2) * 100 as int8: the stored double rounded
--              to the cent half away from zero. NULL for no price (the load
--              counts it as 0) and for a price that cannot be cents.
--   unusable   the raw numeric cents of a price that does not fit int8 (NaN,
--              infinity, beyond 2^63): the load casts it to int8 only for a line
--              that uses it, so the batch fails exactly as if it had rounded the
--              price itself, and only batches using that price fail.
--   blueprint  the type is in the category named 'Blueprint' (a copy, singleton
--              2, is 0.01 ISK a unit).
-- NaN sorts above every number in PostgreSQL, so the comparison catches it with
-- the infinities.
-- One transaction, free of the session's statement_timeout: the build reads
-- every price, once, and a timeout meant for batches must not fail every
-- batch of the job (each would be split down to dead letters).
BEGIN;
SET LOCAL statement_timeout = 0;
CREATE TEMP TABLE IF NOT EXISTS {table} (
    type_id   int4 PRIMARY KEY,
    cents     int8,
    unusable  numeric,
    blueprint bool NOT NULL
);
TRUNCATE {table};
INSERT INTO {table} (type_id, cents, unusable, blueprint)
SELECT coalesce(p.type_id, b.type_id),
       CASE WHEN NOT p.too_big THEN p.cents::int8 END,
       CASE WHEN p.too_big THEN p.cents END,
       b.type_id IS NOT NULL
FROM (
    SELECT mp.type_id,
           round(mp.{price_column}::numeric, 2) * 100 AS cents,
           abs(round(mp.{price_column}::numeric, 2) * 100) > 9223372036854775807 AS too_big
    FROM market_prices AS mp
) AS p
FULL JOIN (
    SELECT t.id AS type_id
    FROM types AS t
    JOIN item_groups AS g ON g.id = t.group_id
    JOIN categories AS c ON c.id = g.category_id
    WHERE c.name = 'Blueprint'
) AS b ON b.type_id = p.type_id;
ANALYZE {table};
COMMIT;
