-- The first part of the stale search (sql/stale_ids.sql), as CTEs for a WITH:
-- by_price, the killmails stamped before a price of theirs moved, one row each
-- with whether every such line was unpriced and is now priced.
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
--
-- Each side runs where its bound switch is true (%(stale_by_type)s for the
-- lines' and the victims' routes by type, %(stale_by_killmail)s), that is where
-- it has versions: the planner leaves a route out whose switch is false, where
-- an empty array of versions still scanned every stamp (20 of a 0.28 s search).
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
      AND %(stale_by_type)s::bool
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
      AND %(stale_by_killmail)s::bool
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
      AND %(stale_by_type)s::bool
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
)
