-- The killmails a `--mode stale` job revalues under the book {book}, each with
-- why (bulk/engine/stale.py), one row per killmail:
--   never_valued   no value (with or without a stamp: a value removed since)
--   no_stamp       a value but no stamp: valued by something else
--   other_rules    a stamp of another book (rule set or price column)
--   book_rebuilt   a stamp below the book's floor: its prices are gone
--   now_priced     a line was unpriced (fallback, unknown type) and its
--                  type's price is now usable
--   prices_changed a type's unit cents in the book moved by more than
--                  %(min_change)s (a fraction: 0 is any cent) since the stamp
--
-- The pairs whose prices moved come from sql/stale_moved.sql, as arrays (one
-- element a row): %(stale_since)s int8[], %(stale_dates)s date[], %(stale_types)s int4[],
-- %(stale_now_priced)s bool[], with %(stale_moved_types)s int4[] the distinct types and
-- %(stale_sinces)s int8[] the distinct versions; %(by_type_*)s and %(by_killmail_*)s
-- split the versions (and their moved types) by the side their lines are
-- found from. As bound arrays, the planner knows their sizes; a CTE's it
-- would guess.
--
-- Placeholders, from fixed text (bulk/engine/rules.py, scan.py), never user text:
--   {book} the book's key as a literal   {price_date} killmail k's price date
--   {filters} the job's filters on alias k (their values are parameters)
WITH book_floor AS (
    SELECT coalesce(max(bv.floor), 0) AS version
    FROM bulk_book_versions AS bv
    WHERE bv.book = {book}
),
moved AS (
    SELECT m.since, m.price_date, m.type_id, m.now_priced
    FROM unnest(%(stale_since)s::int8[], %(stale_dates)s::text[]::date[], %(stale_types)s::int4[],
                %(stale_now_priced)s::bool[]) AS m (since, price_date, type_id, now_priced)
),
-- The lines of a moved type in killmails stamped before it moved, found from
-- one side or the other per stamped version (bulk/engine/stale.py chooses by
-- the sizes): from the moved types' lines through the index on item types
-- where few types moved since the version; from the version's killmails'
-- lines through the index on killmail_id where few killmails hold the version
-- and most types moved since it. Either alone read every line in such a case.
held AS (
    SELECT s.killmail_id, s.version, s.unpriced, i.item_type_id AS type_id
    FROM killmail_items AS i
    CROSS JOIN LATERAL (
        -- A probe of the stamps' key per line: a hash of every stamp cost
        -- more than the lines of the few types this route is chosen for.
        SELECT s.killmail_id, s.version, s.unpriced
        FROM bulk_valuations AS s
        WHERE s.killmail_id = i.killmail_id
          AND s.book = {book} AND s.version = ANY(%(stale_by_type_versions)s::int8[])
        OFFSET 0
    ) AS s
    WHERE i.item_type_id = ANY(%(stale_by_type_types)s::int4[])
    UNION ALL
    SELECT s.killmail_id, s.version, s.unpriced, i.item_type_id
    FROM bulk_valuations AS s
    CROSS JOIN LATERAL (
        -- OFFSET 0 keeps this a probe of the index per killmail.
        SELECT i.item_type_id
        FROM killmail_items AS i
        WHERE i.killmail_id = s.killmail_id
          AND i.item_type_id = ANY(%(stale_by_killmail_types)s::int4[])
        OFFSET 0
    ) AS i
    WHERE s.book = {book} AND s.version = ANY(%(stale_by_killmail_versions)s::int8[])
    UNION ALL
    SELECT s.killmail_id, s.version, s.unpriced, v.ship_type_id
    FROM victims AS v
    CROSS JOIN LATERAL (
        SELECT s.killmail_id, s.version, s.unpriced
        FROM bulk_valuations AS s
        WHERE s.killmail_id = v.killmail_id
          AND s.book = {book} AND s.version = ANY(%(stale_by_type_versions)s::int8[])
        OFFSET 0
    ) AS s
    WHERE v.ship_type_id = ANY(%(stale_by_type_types)s::int4[])
    UNION ALL
    SELECT s.killmail_id, s.version, s.unpriced, v.ship_type_id
    FROM bulk_valuations AS s
    CROSS JOIN LATERAL (
        SELECT v.ship_type_id
        FROM victims AS v
        WHERE v.killmail_id = s.killmail_id
          AND v.ship_type_id = ANY(%(stale_by_killmail_types)s::int4[])
        OFFSET 0
    ) AS v
    WHERE s.book = {book} AND s.version = ANY(%(stale_by_killmail_versions)s::int8[])
),
by_price AS (
    SELECT h.killmail_id, bool_and(h.unpriced AND m.now_priced) AS now_priced
    FROM held AS h
    JOIN killmails AS k ON k.killmail_id = h.killmail_id
    JOIN moved AS m
      ON m.since = h.version AND m.type_id = h.type_id AND m.price_date = {price_date}
    WHERE {filters}
      -- Those are the unstamped part's (a value gone, or a stamp below the floor).
      AND k.total_value IS NOT NULL
      AND h.version >= (SELECT f.version FROM book_floor AS f)
    GROUP BY h.killmail_id
),
unstamped AS (
    SELECT k.killmail_id,
           CASE
               WHEN k.total_value IS NULL THEN 'never_valued'
               WHEN s.killmail_id IS NULL THEN 'no_stamp'
               WHEN s.book <> {book} THEN 'other_rules'
               ELSE 'book_rebuilt'
           END AS reason
    FROM killmails AS k
    LEFT JOIN bulk_valuations AS s ON s.killmail_id = k.killmail_id
    WHERE (k.total_value IS NULL
           OR s.killmail_id IS NULL
           OR s.book <> {book}
           OR s.version < (SELECT f.version FROM book_floor AS f))
      AND {filters}
)
SELECT u.killmail_id, u.reason FROM unstamped AS u
UNION ALL
SELECT b.killmail_id, CASE WHEN b.now_priced THEN 'now_priced' ELSE 'prices_changed' END
FROM by_price AS b
ORDER BY 1
-- The job's --limit (NULL: none), applied to the killmails found in ID order.
LIMIT %(stale_limit)s
