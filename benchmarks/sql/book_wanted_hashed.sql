-- Ceiling builds "single", "parity" and "halves" (benchmarks/book_ceiling.py):
-- the same (type, price date) pairs as the engine's sql/book_wanted.sql,
-- deduplicated by one hash aggregate over UNION ALL (a UNION, which the engine
-- used at first, sorts every line of the job on disk: 7 million at 300,000
-- killmails), here with a filter on the type so a process can build a share.
-- Filled into the engine's sql/book_needed.sql as its {wanted}.
--
-- Placeholders (fixed text from bulk/engine/rules.py and book_ceiling.py):
--   {price_date} the price date of killmail k   {killmails} a condition on k
--   {types} a condition on the pair's x.type_id (TRUE, or one part of the types)
SELECT DISTINCT x.type_id, x.price_date
FROM (
    SELECT v.ship_type_id AS type_id, {price_date} AS price_date
    FROM killmails AS k
    JOIN victims AS v ON v.killmail_id = k.killmail_id
    WHERE {killmails}

    UNION ALL

    SELECT i.item_type_id, {price_date}
    FROM killmails AS k
    JOIN killmail_items AS i ON i.killmail_id = k.killmail_id
    WHERE {killmails}
) AS x
WHERE {types}
