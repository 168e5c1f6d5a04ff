-- Builds seed's prices (the replaced system's rule) into the price book:
-- today's market_prices.{price_column}, rounded to the cent half away from
-- zero (round(price::numeric, 2)); no row or NULL: NULL, which sql/book_store.sql
-- prices at the rule set's fallback. Fixed prices of
-- a shape (the capsule hull as a ship, a blueprint copy) come from
-- bulk/engine/rules.py through sql/book_store.sql.
-- {needed}: sql/book_needed.sql   {store}: sql/book_store.sql
WITH {needed},
priced AS (
    SELECT n.type_id, n.price_date,
           round(mp.{price_column}::numeric, 2) AS unit
    FROM needed AS n
    LEFT JOIN market_prices AS mp ON mp.type_id = n.type_id
),
{store}
