-- One row per priced line of a batch, every unit price from the price book:
-- the victim's ship, then every item. Only killmails that still match the mode
-- are returned, so a row another worker has already written is not loaded (the
-- UPDATE re-checks anyway); a stale job's batch is loaded whole, its guard is
-- left to the UPDATE (bulk/engine/modes.py GUARDED_AT_WRITE).
--
-- {batch}: sql/book_batch.sql (the batch, its price dates, the book's rows).
-- {item_cents}: a CASE choosing the book's column for an item line i by its
-- shape (bulk/engine/rules.py SHAPES): copy, escape bay, or plain item.
--
-- The lines: killmail_id, line (0 = ship, 1 = item, 2 = killmail has no victim),
-- unit_cents (unit price in integer cents), qty_destroyed, qty_dropped.
-- They travel packed: one row of five bytea columns, each the big-endian values
-- of one column in line order (int4send / int2send / int8send + string_agg),
-- which numpy reads with frombuffer instead of turning ~13,000 rows into Python
-- objects. killmail_id is int4 and line int2, as in the table: 30 bytes a line.
-- A seventh column lists the killmails with a line the book prices by the rule
-- set's fallback or whose type `types` lacks, and an eighth is the book's
-- version: both go into the stamps the write adds (sql/update_batch.sql).
-- A sixth column counts the lines whose (type, price date) the book lacks: the
-- engine then builds those prices and loads the batch again; their cents here
-- are 0 and never used.
--
-- The IDs are repeated on victims: joined only through the batch CTE, the
-- planner may hash all of victims (a sequential scan of the whole table for
-- every batch) instead of probing its index 500 times.
--
-- A price that cannot be int8 cents (its column NULL, bad holding it) fails
-- the cast to int8 here, only for a batch with a line that uses it: 22003
-- (beyond int8) or 0A000 (NaN, infinity).
WITH {batch},
lines AS (
    SELECT b.killmail_id,
           CASE WHEN v.killmail_id IS NULL THEN 2 ELSE 0 END::int2 AS line,
           CASE
               WHEN v.killmail_id IS NULL THEN 0
               ELSE coalesce(p.ship, (p.bad * 100)::int8, 0)
           END::int8 AS unit_cents,
           v.killmail_id IS NOT NULL AND p.type_id IS NULL AS missing,
           v.killmail_id IS NOT NULL AND NOT coalesce(p.usable, true) AS unpriced,
           1::int8 AS qty_destroyed,
           0::int8 AS qty_dropped
    FROM batch AS b
    LEFT JOIN victims AS v
           ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])
    LEFT JOIN book AS p ON p.price_date = b.price_date AND p.type_id = v.ship_type_id

    UNION ALL

    SELECT i.killmail_id,
           1::int2,
           coalesce({item_cents}, (p.bad * 100)::int8, 0)::int8,
           p.type_id IS NULL,
           NOT coalesce(p.usable, true),
           coalesce(i.quantity_destroyed, 0)::int8,
           coalesce(i.quantity_dropped, 0)::int8
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN book AS p ON p.price_date = b.price_date AND p.type_id = i.item_type_id
)
SELECT string_agg(int4send(killmail_id), ''::bytea)   AS killmail_id,
       string_agg(int2send(line), ''::bytea)          AS line,
       string_agg(int8send(unit_cents), ''::bytea)    AS unit_cents,
       string_agg(int8send(qty_destroyed), ''::bytea) AS qty_destroyed,
       string_agg(int8send(qty_dropped), ''::bytea)   AS qty_dropped,
       count(*) FILTER (WHERE missing)                AS missing,
       coalesce(array_agg(DISTINCT killmail_id) FILTER (WHERE unpriced), ARRAY[]::int4[])
                                                      AS unpriced,
       (SELECT bv.version FROM book_version AS bv)    AS version
FROM lines
