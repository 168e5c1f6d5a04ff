-- The end of every builder (sql/book_build_<rules>.sql): each needed pair's
-- unit price (priced: type_id, price_date, unit in numeric ISK, rounded to the
-- cent), shaped by the rule set's fixed prices of a ship, a blueprint copy and
-- an escape bay line, turned into cents and written to the book.
--
-- Placeholders, from the fixed data of bulk/engine/rules.py, never user text:
--   {book} the book's key as a literal   {max_cents} int8's largest value
--   {fallback} the rule set's price where its sources have none
--   {ship_fixed} {copy_fixed} {bay_fixed} a CASE over the type t, its group g
--       and category c giving the shape's fixed unit price, or NULL
--
-- A price that cannot be int8 cents (NaN, infinite, beyond 9.2e16 ISK) is kept
-- as bad (numeric ISK) with the columns that use it NULL, so building never
-- fails: only a batch that uses it fails, and names it.
-- A pair the builder found no price for (unit NULL) gets the rule set's
-- {fallback} and is not usable; neither is a type missing from `types`.
-- A row whose prices did not change is not written (changed_at stays); a
-- stale one is marked fresh. A row whose prices changed keeps what it held in
-- bulk_price_book_changes, under the book's next version, which this
-- statement then makes the book's version (bulk_book_versions): in the same
-- transaction, so a batch sees the new rows with the new version or neither.
-- The one row returned: the number of rows written.
shaped AS (
    SELECT x.type_id, x.price_date, u.unit,
           x.unit IS NOT NULL AND t.id IS NOT NULL AS usable,
           coalesce({ship_fixed}, u.unit) AS ship,
           u.unit                         AS item,
           coalesce({copy_fixed}, u.unit) AS copy,
           coalesce({bay_fixed}, u.unit)  AS bay
    FROM priced AS x
    CROSS JOIN LATERAL (SELECT coalesce(x.unit, {fallback}) AS unit) AS u
    LEFT JOIN types AS t ON t.id = x.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    LEFT JOIN categories AS c ON c.id = g.category_id
),
cents AS (
    SELECT s.price_date, s.type_id,
           -- NaN compares above every number, so it is bad with the infinities.
           CASE WHEN abs(s.ship) * 100 <= {max_cents} THEN (s.ship * 100)::int8 END AS ship,
           CASE WHEN abs(s.item) * 100 <= {max_cents} THEN (s.item * 100)::int8 END AS item,
           CASE WHEN abs(s.copy) * 100 <= {max_cents} THEN (s.copy * 100)::int8 END AS copy,
           CASE WHEN abs(s.bay) * 100 <= {max_cents} THEN (s.bay * 100)::int8 END AS bay,
           CASE WHEN abs(s.unit) * 100 <= {max_cents} THEN NULL ELSE s.unit END AS bad,
           s.usable
    FROM shaped AS s
),
-- A book with no rows yet starts a new lineage: above every version its stamps
-- hold (the tool's tables may have been dropped and made again), with its
-- floor there, so no stamp of the lost rows is taken for current.
lineage AS (
    SELECT NOT EXISTS (SELECT 1 FROM bulk_price_book AS p WHERE p.book = {book})
           OR NOT EXISTS (SELECT 1 FROM bulk_book_versions AS v WHERE v.book = {book})
           AS fresh
),
next_version AS (
    SELECT CASE
               WHEN (SELECT l.fresh FROM lineage AS l)
                   THEN greatest(
                       (SELECT v.version FROM bulk_book_versions AS v WHERE v.book = {book}),
                       (SELECT max(s.version) FROM bulk_valuations AS s WHERE s.book = {book}),
                       0)
               ELSE (SELECT v.version FROM bulk_book_versions AS v WHERE v.book = {book})
           END + 1 AS version
),
stored AS (
    INSERT INTO bulk_price_book AS p
        (book, price_date, type_id, ship, item, copy, bay, bad, usable, stale, changed_at)
    SELECT {book}, n.price_date, n.type_id, n.ship, n.item, n.copy, n.bay, n.bad, n.usable,
           false, now()
    FROM cents AS n
    -- A batch reads the rows of its price dates: written in date order, a job's
    -- rows of one date share a few hundred pages, where 5,172 rows of two dates
    -- were on 1,917 (a kill-date batch 11.0 against 12.6 ms at 5,000 kills a day).
    ORDER BY n.price_date, n.type_id
    ON CONFLICT (book, price_date, type_id) DO UPDATE
    SET ship = excluded.ship, item = excluded.item, copy = excluded.copy, bay = excluded.bay,
        bad = excluded.bad, usable = excluded.usable, stale = false,
        changed_at = CASE
                         WHEN (p.ship, p.item, p.copy, p.bay, p.bad, p.usable)
                              IS DISTINCT FROM
                              (excluded.ship, excluded.item, excluded.copy, excluded.bay,
                               excluded.bad, excluded.usable)
                             THEN excluded.changed_at
                         ELSE p.changed_at
                     END
    WHERE p.stale
       OR (p.ship, p.item, p.copy, p.bay, p.bad, p.usable)
          IS DISTINCT FROM (excluded.ship, excluded.item, excluded.copy, excluded.bay,
                            excluded.bad, excluded.usable)
    -- xmax is 0 on a row inserted, not on one updated.
    RETURNING p.price_date, p.type_id, p.ship, p.item, p.copy, p.bay, p.bad, p.usable,
              p.xmax <> 0 AS updated
),
logged AS (
    INSERT INTO bulk_price_book_changes
        (book, price_date, type_id, version, ship, item, copy, bay, bad, usable)
    SELECT {book}, s.price_date, s.type_id, (SELECT nv.version FROM next_version AS nv),
           h.ship, h.item, h.copy, h.bay, h.bad, h.usable
    FROM stored AS s
    -- The row as it was: this statement reads the snapshot the upsert wrote over.
    -- One probe of the key per row updated (LIMIT keeps it a probe: as a join,
    -- a plan from stale statistics walked the book's whole index per row,
    -- through the rows this statement had just inserted).
    CROSS JOIN LATERAL (
        SELECT o.ship, o.item, o.copy, o.bay, o.bad, o.usable
        FROM bulk_price_book AS o
        WHERE o.book = {book} AND o.price_date = s.price_date AND o.type_id = s.type_id
        LIMIT 1
    ) AS h
    WHERE s.updated
      AND (h.ship, h.item, h.copy, h.bay, h.bad, h.usable)
          IS DISTINCT FROM (s.ship, s.item, s.copy, s.bay, s.bad, s.usable)
    RETURNING 1
),
bumped AS (
    INSERT INTO bulk_book_versions AS v (book, version, floor)
    SELECT {book}, nv.version, nv.version
    FROM next_version AS nv
    WHERE EXISTS (SELECT 1 FROM logged) OR (SELECT l.fresh FROM lineage AS l)
    ON CONFLICT (book) DO UPDATE
    SET version = excluded.version,
        floor = CASE WHEN (SELECT l.fresh FROM lineage AS l) THEN excluded.floor ELSE v.floor END
)
SELECT count(*) FROM stored
