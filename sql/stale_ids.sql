-- The killmails a `--mode stale` job revalues under the book {book}, each with
-- why (bulk/engine/stale.py), one row per killmail:
--   never_valued   no stamp and no value
--   no_stamp       a value but no stamp: valued by something else
--   other_rules    a stamp of another book (rule set or price column)
--   now_priced     a line was unpriced (fallback, unknown type) and its
--                  type's price is now usable
--   prices_changed a type's unit cents in the book moved by more than
--                  %(min_change)s (a fraction: 0 is any cent) since the stamp
--
-- A price change is found from the book's changes (bulk_price_book_changes)
-- newer than the oldest stamp of the book, through the killboard's indexes on
-- item and ship types (killmail_items.item_type_id, victims.ship_type_id):
-- only the killmails that hold a changed type are read, never every line.
-- The price a stamp's values used is the oldest change after the stamp's
-- version, or the row itself: compared with the row as it is now, a price
-- that moved and came back is no change.
--
-- Placeholders, from fixed text (bulk/engine/rules.py, scan.py), never user text:
--   {book} the book's key as a literal   {price_date} killmail k's price date
--   {filters} the job's filters on alias k (their values are parameters)
WITH oldest AS (
    SELECT coalesce(min(s.version), 0) AS version
    FROM bulk_valuations AS s
    WHERE s.book = {book}
),
changed AS MATERIALIZED (
    SELECT c.price_date, c.type_id, max(c.version) AS last_version
    FROM bulk_price_book_changes AS c
    WHERE c.book = {book}
      AND c.version > (SELECT o.version FROM oldest AS o)
    GROUP BY c.price_date, c.type_id
),
changed_types AS MATERIALIZED (
    SELECT DISTINCT ch.type_id FROM changed AS ch
),
holders AS (
    SELECT i.killmail_id, i.item_type_id AS type_id
    FROM killmail_items AS i
    WHERE i.item_type_id IN (SELECT t.type_id FROM changed_types AS t)
    UNION
    SELECT v.killmail_id, v.ship_type_id
    FROM victims AS v
    WHERE v.ship_type_id IN (SELECT t.type_id FROM changed_types AS t)
),
by_price AS (
    SELECT h.killmail_id,
           bool_and(s.unpriced AND NOT o.usable AND p.usable) AS now_priced
    FROM holders AS h
    JOIN killmails AS k ON k.killmail_id = h.killmail_id
    JOIN bulk_valuations AS s ON s.killmail_id = h.killmail_id AND s.book = {book}
    JOIN changed AS ch ON ch.type_id = h.type_id AND ch.price_date = {price_date}
    JOIN bulk_price_book AS p
      ON p.book = {book} AND p.price_date = ch.price_date AND p.type_id = ch.type_id
    CROSS JOIN LATERAL (
        SELECT o.ship, o.item, o.copy, o.bay, o.bad, o.usable
        FROM bulk_price_book_changes AS o
        WHERE o.book = {book} AND o.price_date = ch.price_date AND o.type_id = ch.type_id
          AND o.version > s.version
        ORDER BY o.version
        LIMIT 1
    ) AS o
    WHERE ch.last_version > s.version
      AND {filters}
      AND (o.usable <> p.usable
           OR o.bad IS DISTINCT FROM p.bad
           OR EXISTS (
               SELECT 1
               FROM (VALUES (o.ship, p.ship), (o.item, p.item),
                            (o.copy, p.copy), (o.bay, p.bay)) AS x (was, now)
               WHERE x.was IS DISTINCT FROM x.now
                 AND (x.was IS NULL OR x.now IS NULL
                      OR abs(x.now::numeric - x.was::numeric)
                         > %(min_change)s::numeric * abs(x.was::numeric))))
    GROUP BY h.killmail_id
),
unstamped AS (
    SELECT k.killmail_id,
           CASE
               WHEN s.killmail_id IS NOT NULL THEN 'other_rules'
               WHEN k.total_value IS NULL THEN 'never_valued'
               ELSE 'no_stamp'
           END AS reason
    FROM killmails AS k
    LEFT JOIN bulk_valuations AS s ON s.killmail_id = k.killmail_id
    WHERE (s.killmail_id IS NULL OR s.book <> {book})
      AND {filters}
)
SELECT u.killmail_id, u.reason FROM unstamped AS u
UNION ALL
SELECT b.killmail_id, CASE WHEN b.now_priced THEN 'now_priced' ELSE 'prices_changed' END
FROM by_price AS b
ORDER BY 1
