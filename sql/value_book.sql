-- The set-based engine (--engine sql): values and writes one batch in one
-- statement, from the same book rows and with the same mode guard as
-- sql/load_book.sql + pricing.py + sql/update_batch.sql do in three steps.
--
-- {batch}: sql/book_batch.sql (the batch, its price dates, the book's rows).
-- Placeholders filled from fixed tables (bulk/engine/modes.py, rules.py), never user text:
--   {item_cents}      a CASE choosing the book's column for an item line i by its shape
--   {mode_predicate}  on alias k, again in the UPDATE: a row another worker
--                     wrote since is skipped
--   {cents}           how a line's cents are multiplied out: int8 (fast), or
--                     numeric after an int8 product overflowed (exact always);
--                     sum() of either is numeric, so sums never overflow
--   {touch}           empty, or ", updated_at = <the statement's time>"
--
-- Items are grouped by the batch CTE's killmail_id, not the lines': a CTE has no
-- statistics, so the planner expects a few hundred groups and hashes them; by
-- the lines' column it expected one group a line and sorted 11,000 lines (9.3
-- against 10.3 ms a seed batch).
--
-- Every row written gets its stamp (bulk_valuations: the book, its version in
-- this statement's snapshot, the time, whether a line was unpriced) in this
-- statement: a value and its stamp are written together or not at all.
--
-- One row: the number of rows written, the IDs of the batch's killmails that
-- have no victim (not valued, reported), and the number of lines whose
-- (type, price date) the book lacks. Where that is not 0 nothing is written:
-- the engine builds those prices and runs the statement again.
WITH {batch},
ship AS (
    SELECT b.killmail_id,
           coalesce(p.ship, (p.bad * 100)::int8, 0)::int8 AS cents,
           p.type_id IS NULL AS missing,
           NOT coalesce(p.usable, true) AS unpriced
    FROM batch AS b
    JOIN victims AS v
      ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])
    LEFT JOIN book AS p ON p.price_date = b.price_date AND p.type_id = v.ship_type_id
),
items AS (
    SELECT b.killmail_id,
           sum(c.cents * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(c.cents * coalesce(i.quantity_dropped, 0))   AS dropped,
           count(*) FILTER (WHERE p.type_id IS NULL)        AS missing,
           bool_or(NOT p.usable)                            AS unpriced
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN book AS p ON p.price_date = b.price_date AND p.type_id = i.item_type_id
    CROSS JOIN LATERAL (
        SELECT coalesce({item_cents}, (p.bad * 100)::int8, 0)::{cents} AS cents
    ) AS c
    GROUP BY b.killmail_id
),
missing AS (
    SELECT (SELECT count(*) FROM ship WHERE missing)
           + (SELECT coalesce(sum(missing), 0) FROM items) AS lines
),
written AS (
    UPDATE killmails AS k
    SET total_value     = ((s.cents + coalesce(it.destroyed, 0) + coalesce(it.dropped, 0)) * 0.01)::float8,
        destroyed_value = ((s.cents + coalesce(it.destroyed, 0)) * 0.01)::float8,
        dropped_value   = (coalesce(it.dropped, 0) * 0.01)::float8{touch}
    FROM ship AS s
    LEFT JOIN items AS it ON it.killmail_id = s.killmail_id
    WHERE k.killmail_id = s.killmail_id
      AND {mode_predicate}
      AND (SELECT m.lines FROM missing AS m) = 0
    RETURNING k.killmail_id, s.unpriced OR coalesce(it.unpriced, false) AS unpriced
),
-- A killmail's stamp is updated where it has one, inserted where not: an
-- upsert of every row (ON CONFLICT) locks each conflicting row before it
-- updates it, which cost more than the stamps' own writes. The insert keeps
-- ON CONFLICT for a stamp another writer adds meanwhile.
restamped AS (
    UPDATE bulk_valuations AS vs
    SET book = {book}, version = (SELECT bv.version FROM book_version AS bv),
        valued_at = statement_timestamp(), unpriced = w.unpriced
    FROM written AS w
    WHERE vs.killmail_id = w.killmail_id
    RETURNING vs.killmail_id
),
stamped AS (
    INSERT INTO bulk_valuations AS vs (killmail_id, book, version, valued_at, unpriced)
    SELECT w.killmail_id, {book}, (SELECT bv.version FROM book_version AS bv),
           statement_timestamp(), w.unpriced
    FROM written AS w
    WHERE w.killmail_id NOT IN (SELECT r.killmail_id FROM restamped AS r)
    ON CONFLICT (killmail_id) DO UPDATE
    SET book = excluded.book, version = excluded.version, valued_at = excluded.valued_at,
        unpriced = excluded.unpriced
)
SELECT (SELECT count(*) FROM written),
       array(SELECT killmail_id FROM batch
             EXCEPT ALL
             SELECT killmail_id FROM ship
             ORDER BY 1),
       (SELECT m.lines FROM missing AS m)
