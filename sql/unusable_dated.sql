-- The (type, price date) pairs of a batch whose dated unit price cannot be
-- int8 cents, so load_batch_dated.sql failed for the batch. Asked only after
-- such a failure, to name them in the error; it reads the connection's cache.
--
-- Parameters: %(ids)s int[] (the batch).
-- Placeholders filled from fixed tables (bulk/engine/modes.py, rules.py), never user text:
--   {mode_predicate} on alias k   {rules} the rule set's name as a literal
--   {price_date} the price date of killmail k
--   {line_exempt} item lines i priced by the line itself, which use no type price
WITH batch AS (
    SELECT k.killmail_id, {price_date} AS price_date
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)s::int[])
      AND {mode_predicate}
),
used AS (
    SELECT v.ship_type_id AS type_id, b.price_date
    FROM batch AS b
    JOIN victims AS v ON v.killmail_id = b.killmail_id

    UNION

    SELECT i.item_type_id, b.price_date
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    WHERE NOT {line_exempt}
)
SELECT c.type_id, c.price_date, c.bad
FROM used AS u
JOIN pg_temp.bulk_dated_cents AS c
  ON c.rules = {rules} AND c.type_id = u.type_id AND c.price_date = u.price_date
WHERE c.cents IS NULL
ORDER BY c.type_id, c.price_date
