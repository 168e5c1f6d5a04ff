-- The valuation of the price-book ceiling (benchmarks/book_ceiling.py): one
-- set-based UPDATE over a keyset range (lo, hi] of killmail IDs, every unit
-- price joined from the book by equality on (price date, type). Mode null.
-- The book's rows of the chunk's price dates are read once by the primary
-- key's (book, price_date) prefix and hashed, as the engines do.
-- Nothing is missing from the book (the ceiling built it for the whole job
-- first), and no price in the demo data is beyond int8 cents (bad): a line
-- without a price counts 0, and the check against the reference would fail.
--
-- Parameters: %(lo)s, %(hi)s.
-- Placeholders (fixed text from bulk/engine/rules.py and book_ceiling.py):
--   {book} the book's key as a literal   {price_date} the price date of killmail k
--   {item_cents} the book's column of item line i by its shape (rules.item_cents_sql)
--   {part} a further condition on k: TRUE, or this process's part of the price dates
WITH todo AS (
    SELECT k.killmail_id, {price_date} AS price_date
    FROM killmails AS k
    WHERE k.killmail_id > %(lo)s AND k.killmail_id <= %(hi)s
      AND k.total_value IS NULL
      AND {part}
),
book AS MATERIALIZED (
    SELECT p.price_date, p.type_id, p.ship, p.item, p.copy, p.bay
    FROM bulk_price_book AS p
    WHERE p.book = {book}
      AND p.price_date >= (SELECT min(t.price_date) FROM todo AS t)
      AND p.price_date <= (SELECT max(t.price_date) FROM todo AS t)
),
ship AS (
    SELECT t.killmail_id, coalesce(p.ship, 0) AS cents
    FROM todo AS t
    JOIN victims AS v ON v.killmail_id = t.killmail_id
    LEFT JOIN book AS p ON p.price_date = t.price_date AND p.type_id = v.ship_type_id
),
items AS (
    SELECT i.killmail_id,
           sum(c.cents * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(c.cents * coalesce(i.quantity_dropped, 0))   AS dropped
    FROM todo AS t
    JOIN killmail_items AS i ON i.killmail_id = t.killmail_id
    LEFT JOIN book AS p ON p.price_date = t.price_date AND p.type_id = i.item_type_id
    CROSS JOIN LATERAL (SELECT coalesce({item_cents}, 0)::int8 AS cents) AS c
    GROUP BY i.killmail_id
)
UPDATE killmails AS k
SET total_value     = ((s.cents + coalesce(it.destroyed, 0) + coalesce(it.dropped, 0)) * 0.01)::float8,
    destroyed_value = ((s.cents + coalesce(it.destroyed, 0)) * 0.01)::float8,
    dropped_value   = (coalesce(it.dropped, 0) * 0.01)::float8
FROM ship AS s
LEFT JOIN items AS it ON it.killmail_id = s.killmail_id
WHERE k.killmail_id = s.killmail_id
  AND k.total_value IS NULL
