-- One row per priced line of a batch: the victim's ship, then every item.
-- Only killmails that still match the mode are returned, so a row another
-- worker has already written is not loaded (the UPDATE re-checks anyway).
--
-- Parameters: %(ids)s int[] (the batch).
-- Placeholders filled from fixed tables in bulk/sqlfiles.py, never user text:
--   {mode_predicate}  on alias k (killmails)
--   {price_column}    sell | buy | average
--
-- The lines: killmail_id, line (0 = ship, 1 = item, 2 = killmail has no victim),
-- unit_cents (unit price in integer cents), qty_destroyed, qty_dropped.
-- They travel packed: one row of five bytea columns, each the big-endian int8
-- values of one column in line order (int8send + string_agg), which numpy reads
-- with frombuffer instead of turning ~13,000 rows into Python objects.
--
-- Unit price rules (DESIGN.md): the stored double is rounded to the cent by
-- round(numeric, 2), half away from zero; no price row or NULL -> 0;
-- a capsule ship (670) is 10 ISK; a blueprint copy (singleton 2 in the
-- category named 'Blueprint') is 0.01 ISK a unit.
WITH batch AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)s::int[])
      AND {mode_predicate}
),
lines AS (
    SELECT b.killmail_id,
           CASE WHEN v.killmail_id IS NULL THEN 2 ELSE 0 END::int2 AS line,
           CASE
               WHEN v.killmail_id IS NULL THEN 0
               WHEN v.ship_type_id = 670 THEN 1000
               ELSE coalesce(round(mp.{price_column}::numeric, 2) * 100, 0)
           END::int8 AS unit_cents,
           1::int8 AS qty_destroyed,
           0::int8 AS qty_dropped
    FROM batch AS b
    LEFT JOIN victims AS v ON v.killmail_id = b.killmail_id
    LEFT JOIN market_prices AS mp ON mp.type_id = v.ship_type_id

    UNION ALL

    SELECT i.killmail_id,
           1::int2,
           CASE
               WHEN i.singleton = 2 AND c.name = 'Blueprint' THEN 1
               ELSE coalesce(round(mp.{price_column}::numeric, 2) * 100, 0)
           END::int8,
           coalesce(i.quantity_destroyed, 0)::int8,
           coalesce(i.quantity_dropped, 0)::int8
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN market_prices AS mp ON mp.type_id = i.item_type_id
    LEFT JOIN types AS t ON t.id = i.item_type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    LEFT JOIN categories AS c ON c.id = g.category_id
)
SELECT string_agg(int8send(killmail_id::int8), ''::bytea) AS killmail_id,
       string_agg(int8send(line::int8), ''::bytea)        AS line,
       string_agg(int8send(unit_cents), ''::bytea)        AS unit_cents,
       string_agg(int8send(qty_destroyed), ''::bytea)     AS qty_destroyed,
       string_agg(int8send(qty_dropped), ''::bytea)       AS qty_dropped
FROM lines
