-- The (type, price date, unit ISK) of a batch's lines whose price in the book
-- cannot be int8 cents, so the batch's valuation failed. Asked only after
-- such a failure, to name them in the error.
--
-- {batch}: sql/book_batch.sql. {item_cents}: the CASE choosing an item line's column.
-- The IDs are repeated on victims and items: joined only through the batch,
-- the planner joined every row of the book's slice to every killmail of the
-- same price date first (1.3 million rows for 500 killmails under seed).
WITH {batch},
used AS (
    SELECT p.type_id, p.price_date, p.bad
    FROM batch AS b
    JOIN victims AS v
      ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])
    JOIN book AS p ON p.price_date = b.price_date AND p.type_id = v.ship_type_id
    WHERE p.ship IS NULL

    UNION

    SELECT p.type_id, p.price_date, p.bad
    FROM batch AS b
    JOIN killmail_items AS i
      ON i.killmail_id = b.killmail_id AND i.killmail_id = ANY(%(ids)b::int[])
    JOIN book AS p ON p.price_date = b.price_date AND p.type_id = i.item_type_id
    WHERE {item_cents} IS NULL
)
-- seed's price date, 'infinity', is no date a client can read: NULL stands for it.
SELECT type_id, nullif(price_date, 'infinity'), bad FROM used ORDER BY type_id, price_date
