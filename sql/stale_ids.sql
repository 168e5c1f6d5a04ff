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
-- %(stale_now_priced)s bool[]; %(stale_by_type_*)s and %(stale_by_killmail_*)s
-- split the versions (and their moved types) by the side their lines are
-- found from. As bound arrays, the planner knows their sizes; a CTE's it
-- would guess. %(stale_floor)s is the book's floor (sql/stale_floor.sql).
--
-- Placeholders, from fixed text (bulk/engine/rules.py, scan.py), never user text:
--   {book} the book's key as a literal   {price_date} killmail k's price date
--   {filters} the job's filters on alias k (their values are parameters)
--   {held_killmails} the join of a held line's killmail k, where {held_filters}
--                    or {price_date} need it; else empty
--   {held_filters}   {filters}, or where nothing but a resume point filters the
--                    job, that point on the held line h: a stale job of the
--                    whole table then hashes no killmail row for its changed
--                    prices (a hash of every killmail, a fifth of the search)
--   {held_having}    empty where k is joined; else a probe that the killmail
--                    exists, once a killmail found (once a line probed the key
--                    of 3 times as many, 0.1 of a 0.57 s search)
WITH moved AS (
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
    SELECT s.killmail_id, s.version, s.unpriced, x.type_id
    FROM bulk_valuations AS s
    CROSS JOIN LATERAL (
        -- A probe of each index per killmail (OFFSET 0 keeps them probes): its
        -- lines, then its victim, from one read of the version's stamps.
        (SELECT i.item_type_id AS type_id
         FROM killmail_items AS i
         WHERE i.killmail_id = s.killmail_id
           AND i.item_type_id = ANY(%(stale_by_killmail_types)s::int4[])
         OFFSET 0)
        UNION ALL
        (SELECT v.ship_type_id
         FROM victims AS v
         WHERE v.killmail_id = s.killmail_id
           AND v.ship_type_id = ANY(%(stale_by_killmail_types)s::int4[])
         OFFSET 0)
    ) AS x
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
),
-- A killmail without a value is the unstamped part's (never_valued) whether or
-- not its prices moved: the end keeps one row a killmail, that part's.
by_price AS (
    SELECT h.killmail_id, bool_and(h.unpriced AND m.now_priced) AS now_priced
    FROM held AS h
    {held_killmails}
    JOIN moved AS m
      ON m.since = h.version AND m.type_id = h.type_id AND m.price_date = {price_date}
    WHERE {held_filters}
      -- Below the floor is the unstamped part's too (book_rebuilt).
      AND h.version >= %(stale_floor)s::int8
    GROUP BY h.killmail_id
    {held_having}
),
-- The killmails without a value, or whose value has no stamp of the book at or
-- above its floor: an anti-join against those stamps (a hash of their keys
-- alone, where a join of every stamp hashed its whole row). Why each is stale is
-- read at the end, for the few found: a probe here (a correlated subquery) would
-- keep the parallel workers out of the join.
unstamped AS (
    SELECT k.killmail_id, k.total_value IS NULL AS never_valued
    FROM killmails AS k
    WHERE NOT EXISTS (
              SELECT 1
              FROM bulk_valuations AS s
              WHERE s.killmail_id = k.killmail_id
                AND k.total_value IS NOT NULL
                AND s.book = {book}
                AND s.version >= %(stale_floor)s::int8)
      AND {filters}
),
unstamped_why AS (
    SELECT u.killmail_id,
           CASE
               WHEN u.never_valued THEN 'never_valued'
               WHEN s.book IS NULL THEN 'no_stamp'
               WHEN s.book <> {book} THEN 'other_rules'
               ELSE 'book_rebuilt'
           END AS reason
    FROM unstamped AS u
    LEFT JOIN LATERAL (
        SELECT s.book FROM bulk_valuations AS s WHERE s.killmail_id = u.killmail_id OFFSET 0
    ) AS s ON true
)
SELECT DISTINCT ON (f.killmail_id) f.killmail_id, f.reason
FROM (
    SELECT u.killmail_id, u.reason, 0 AS rank FROM unstamped_why AS u
    UNION ALL
    SELECT b.killmail_id, CASE WHEN b.now_priced THEN 'now_priced' ELSE 'prices_changed' END, 1
    FROM by_price AS b
) AS f
ORDER BY f.killmail_id, f.rank
-- The job's --limit (NULL: none), applied to the killmails found in ID order.
LIMIT %(stale_limit)s
