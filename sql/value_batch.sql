-- The set-based engine (--engine sql): values and writes one batch in one
-- statement, with the same rules, the same unit-cents table and the same mode
-- guard as load_batch.sql + pricing.py + update_batch.sql do in three steps.
--
-- Parameters: %(ids)b int[] (the batch), sent binary: as text, 500 IDs cost the
-- client more than the rest of the call.
-- Placeholders filled from fixed tables in bulk/engine/modes.py, never user text:
--   {mode_predicate}  on alias k (killmails), in the batch and again in the
--                     UPDATE: a row another worker wrote since is skipped
--   {unit_cents}      the connection's TEMP table of unit cents (sql/unit_cents.sql)
--   {cents}           how a line's cents are multiplied out: int8 (fast), or
--                     numeric after an int8 product overflowed (exact always);
--                     sum() of either is numeric, so sums never overflow
--   {touch}           empty, or ", updated_at = <the statement's time>"
--
-- The IDs are repeated on victims for the planner (see load_batch.sql).
--
-- One row: the number of rows written, and the IDs of the batch's killmails
-- that have no victim (not valued, reported): those of the batch missing from
-- ship, which has joined victims already (a second probe of victims per ID
-- cost about a tenth of the statement).
WITH batch AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)b::int[])
      AND {mode_predicate}
),
ship AS (
    SELECT b.killmail_id,
           CASE
               WHEN v.ship_type_id = 670 THEN 1000
               ELSE coalesce(u.cents, u.unusable::int8, 0)
           END::int8 AS cents
    FROM batch AS b
    JOIN victims AS v
      ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])
    LEFT JOIN {unit_cents} AS u ON u.type_id = v.ship_type_id
),
items AS (
    SELECT i.killmail_id,
           sum(p.cents * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(p.cents * coalesce(i.quantity_dropped, 0))   AS dropped
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    LEFT JOIN {unit_cents} AS u ON u.type_id = i.item_type_id
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN i.singleton = 2 AND u.blueprint THEN 1
                   ELSE coalesce(u.cents, u.unusable::int8, 0)
               END::{cents} AS cents
    ) AS p
    GROUP BY i.killmail_id
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
    RETURNING 1
)
SELECT (SELECT count(*) FROM written),
       array(SELECT killmail_id FROM batch
             EXCEPT ALL
             SELECT killmail_id FROM ship
             ORDER BY 1)
