-- One row per priced line of a batch: the victim's ship, then every item.
-- Only killmails that still match the mode are returned, so a row another
-- worker has already written is not loaded (the UPDATE re-checks anyway).
--
-- Parameters: %(ids)b int[] (the batch), sent binary: as text, 500 IDs cost the
-- client more than the rest of the call.
-- Placeholders filled from fixed tables in bulk/engine/modes.py, never user text:
--   {mode_predicate}  on alias k (killmails)
--   {unit_cents}      the connection's TEMP table of unit cents (sql/unit_cents.sql)
--
-- The lines: killmail_id, line (0 = ship, 1 = item, 2 = killmail has no victim),
-- unit_cents (unit price in integer cents), qty_destroyed, qty_dropped.
-- They travel packed: one row of five bytea columns, each the big-endian values
-- of one column in line order (int4send / int2send / int8send + string_agg),
-- which numpy reads with frombuffer instead of turning ~13,000 rows into Python
-- objects. killmail_id is int4 and line int2, as in the table: 30 bytes a line.
--
-- The IDs are repeated on victims: joined only through the batch CTE, the
-- planner may hash all of victims (a sequential scan of the whole table for
-- every batch) instead of probing its index 500 times.
--
-- Unit price rules: the stored double rounded to the cent half away from zero
-- (done once per connection in unit_cents.sql); no price row or NULL -> 0;
-- a capsule ship (670) is 10 ISK; a blueprint copy (singleton 2 in the
-- category named 'Blueprint') is 0.01 ISK a unit. A price that cannot be cents
-- fails the cast to int8 here, only for a line that uses it.
WITH batch AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)b::int[])
      AND {mode_predicate}
),
lines AS (
    SELECT b.killmail_id,
           CASE WHEN v.killmail_id IS NULL THEN 2 ELSE 0 END::int2 AS line,
           CASE
               WHEN v.killmail_id IS NULL THEN 0
               WHEN v.ship_type_id = 670 THEN 1000
               ELSE coalesce(u.cents, u.unusable::int8, 0)
           END::int8 AS unit_cents,
           1::int8 AS qty_destroyed,
           0::int8 AS qty_dropped
    FROM batch AS b
    LEFT JOIN victims AS v
           ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])
    LEFT JOIN {unit_cents} AS u ON u.type_id = v.ship_type_id

    UNION ALL

    SELECT i.killmail_id,
           1::int2,
           CASE
               WHEN i.singleton = 2 AND u.blueprint THEN 1
               ELSE coalesce(u.cents, u.unusable::int8, 0)
           END::int8,
           coalesce(i.quantity_destroyed, 0)::int8,
           coalesce(i.quantity_dropped, 0)::int8
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN {unit_cents} AS u ON u.type_id = i.item_type_id
)
SELECT string_agg(int4send(killmail_id), ''::bytea)   AS killmail_id,
       string_agg(int2send(line), ''::bytea)          AS line,
       string_agg(int8send(unit_cents), ''::bytea)    AS unit_cents,
       string_agg(int8send(qty_destroyed), ''::bytea) AS qty_destroyed,
       string_agg(int8send(qty_dropped), ''::bytea)   AS qty_dropped
FROM lines
