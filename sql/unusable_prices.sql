-- The types of a batch whose unit price cannot become int8 cents, so the
-- load of the batch failed (bigint out of range, or NaN / infinity). Asked
-- only after such a failure, to name the types in the error.
--
-- Parameters: %(ids)s int[] (the batch).
-- Placeholders filled from fixed tables in bulk/sqlfiles.py, never user text:
--   {mode_predicate}  on alias k (killmails)
--   {price_column}    sell | buy | average
--
-- It mirrors load_batch.sql: a capsule ship and a blueprint copy do not use
-- their market price, so theirs cannot fail a batch. NaN sorts above every
-- number in PostgreSQL, so the comparison catches it with the infinities.
WITH batch AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)s::int[])
      AND {mode_predicate}
),
used AS (
    SELECT v.ship_type_id AS type_id
    FROM batch AS b
    JOIN victims AS v ON v.killmail_id = b.killmail_id
    WHERE v.ship_type_id <> 670

    UNION

    SELECT i.item_type_id
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN types AS t ON t.id = i.item_type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    LEFT JOIN categories AS c ON c.id = g.category_id
    WHERE (i.singleton = 2 AND c.name = 'Blueprint') IS NOT TRUE
)
SELECT mp.type_id, mp.{price_column}
FROM used AS u
JOIN market_prices AS mp ON mp.type_id = u.type_id
WHERE abs(round(mp.{price_column}::numeric, 2) * 100) > 9223372036854775807
ORDER BY mp.type_id
