-- The price table: its size and age, and how many of the types that killmails
-- use (victim ships and items) have a non-zero price in {price_column}.
-- {items}: killmail_items, or killmail_items TABLESAMPLE SYSTEM (n) on a big
-- table, where reading every item row would take seconds (the share is then
-- an estimate).
WITH used AS (
    SELECT ship_type_id AS type_id FROM victims
    UNION
    SELECT item_type_id FROM {items}
)
SELECT (SELECT count(*) FROM market_prices)          AS price_rows,
       (SELECT min(updated_at) FROM market_prices)   AS oldest,
       (SELECT max(updated_at) FROM market_prices)   AS newest,
       count(*)                                      AS types_used,
       count(*) FILTER (WHERE p.{price_column} > 0)  AS types_priced
FROM used
LEFT JOIN market_prices AS p ON p.type_id = used.type_id
