-- The (type, price date) pairs some killmails need from the price book: their
-- victims' ships and every item type, each at the killmail's price date.
-- Filled into a builder's {wanted} (sql/book_needed.sql), or, for a whole
-- job, into sql/book_job_pairs.sql.
--
-- Placeholders filled from fixed tables (bulk/engine/rules.py, engine/book.py):
--   {price_date} the price date of killmail k
--   {killmails}  which killmails, on alias k: a batch's IDs (%(ids)b) or a
--                job's selection (its mode and filters, bound parameters)
-- GROUP BY over UNION ALL, not UNION: hashed, and in parallel where the
-- statement allows it, rather than a sort of every line (5.5 s against 2.6 s
-- for 7 million lines).
SELECT x.type_id, x.price_date
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
GROUP BY x.type_id, x.price_date
