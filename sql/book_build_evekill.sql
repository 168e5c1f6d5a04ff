-- Builds the evekill prices of the needed (type, price date) pairs into the
-- price book, in one statement, whatever the number of pairs.
-- {needed}: sql/book_needed.sql   {store}: sql/book_store.sql
-- {override}: sql/book_override.sql on pair n
-- Placeholders filled from the fixed tables of bulk/engine/rules.py, never user text:
--   {region} the market region   {type_price} fixed price of type t / group g
--   {fallback} the price without any other
--
-- EVE-KILL's rule for a type on the price date (the UTC kill date):
-- 1. a price override valid on that date (inclusive ends, NULL open; the
--    latest valid_from wins, an open start counting as earliest, then the highest id);
-- 2. the type's fixed price by category or group;
-- 3. the latest daily average > 0 on or before the date, in the region
--    (the primary key (region_id, type_id, date) read backwards, one row);
-- 4. otherwise the fallback.
-- The coalesce runs its scalar subqueries only as far as needed: a fixed
-- price never reads the history. The unit price is round(price::numeric, 2).
-- Line prices (blueprint copies) are shapes, applied by {store}.
WITH {needed},
priced AS MATERIALIZED (
    SELECT n.type_id, n.price_date,
           round(coalesce(
               {override},
               {type_price},
               (SELECT h.average::numeric
                FROM market_price_history AS h
                WHERE h.region_id = {region}
                  AND h.type_id = n.type_id
                  AND h.date <= n.price_date
                  AND h.average > 0
                ORDER BY h.date DESC
                LIMIT 1)
           ), 2) AS unit
    FROM needed AS n
    LEFT JOIN types AS t ON t.id = n.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
),
{store}
