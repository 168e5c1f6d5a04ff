-- The end of every builder (sql/book_build_<rules>.sql): each needed pair's
-- unit price (priced: type_id, price_date, unit in numeric ISK, rounded to the
-- cent), shaped by the rule set's fixed prices of a ship, a blueprint copy and
-- an escape bay line, turned into cents and written to the book.
--
-- Placeholders, from the fixed data of bulk/engine/rules.py, never user text:
--   {book} the book's key as a literal   {max_cents} int8's largest value
--   {ship_fixed} {copy_fixed} {bay_fixed} a CASE over the type t, its group g
--       and category c giving the shape's fixed unit price, or NULL
--
-- A price that cannot be int8 cents (NaN, infinite, beyond 9.2e16 ISK) is kept
-- as bad (numeric ISK) with the columns that use it NULL, so building never
-- fails: only a batch that uses it fails, and names it.
-- A row whose prices did not change is not written (changed_at stays); a
-- stale one is marked fresh.
shaped AS (
    SELECT x.type_id, x.price_date, x.unit,
           coalesce({ship_fixed}, x.unit) AS ship,
           x.unit                         AS item,
           coalesce({copy_fixed}, x.unit) AS copy,
           coalesce({bay_fixed}, x.unit)  AS bay
    FROM priced AS x
    LEFT JOIN types AS t ON t.id = x.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    LEFT JOIN categories AS c ON c.id = g.category_id
)
INSERT INTO bulk_price_book AS p
    (book, price_date, type_id, ship, item, copy, bay, bad, stale, changed_at)
SELECT {book}, s.price_date, s.type_id,
       -- NaN compares above every number, so it is bad with the infinities.
       CASE WHEN abs(s.ship) * 100 <= {max_cents} THEN (s.ship * 100)::int8 END,
       CASE WHEN abs(s.item) * 100 <= {max_cents} THEN (s.item * 100)::int8 END,
       CASE WHEN abs(s.copy) * 100 <= {max_cents} THEN (s.copy * 100)::int8 END,
       CASE WHEN abs(s.bay) * 100 <= {max_cents} THEN (s.bay * 100)::int8 END,
       CASE WHEN abs(s.unit) * 100 <= {max_cents} THEN NULL ELSE s.unit END,
       false,
       now()
FROM shaped AS s
-- A batch reads the rows of its price dates: written in date order, a job's
-- rows of one date share a few hundred pages, where 5,172 rows of two dates
-- were on 1,917 (a kill-date batch 11.0 against 12.6 ms at 5,000 kills a day).
ORDER BY s.price_date, s.type_id
ON CONFLICT (book, price_date, type_id) DO UPDATE
SET ship = excluded.ship, item = excluded.item, copy = excluded.copy, bay = excluded.bay,
    bad = excluded.bad, stale = false,
    changed_at = CASE
                     WHEN (p.ship, p.item, p.copy, p.bay, p.bad)
                          IS DISTINCT FROM
                          (excluded.ship, excluded.item, excluded.copy, excluded.bay, excluded.bad)
                         THEN excluded.changed_at
                     ELSE p.changed_at
                 END
WHERE p.stale
   OR (p.ship, p.item, p.copy, p.bay, p.bad)
      IS DISTINCT FROM (excluded.ship, excluded.item, excluded.copy, excluded.bay, excluded.bad)
