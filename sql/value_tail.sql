-- The set-based engine's end for a load whose lines come as a CTE `lines`
-- (killmail_id, line, unit_cents, qty_destroyed, qty_dropped): appended to the
-- WITH part of sql/load_batch_dated.sql, it sums and writes the batch in the
-- same statement, as sql/value_batch.sql does for seed.
--
-- Placeholders filled from fixed tables in bulk/engine/modes.py, never user text:
--   {cents}           int8, or numeric after an int8 product overflowed
--   {touch}           empty, or ", updated_at = <the statement's time>"
--   {mode_predicate}  on alias k, again in the UPDATE: the guard
,
sums AS (
    SELECT l.killmail_id,
           bool_or(l.line = 2)                                AS no_victim,
           sum(l.unit_cents::{cents} * l.qty_destroyed)       AS destroyed,
           sum(l.unit_cents::{cents} * l.qty_dropped)         AS dropped
    FROM lines AS l
    GROUP BY l.killmail_id
),
written AS (
    UPDATE killmails AS k
    SET total_value     = ((s.destroyed + s.dropped) * 0.01)::float8,
        destroyed_value = (s.destroyed * 0.01)::float8,
        dropped_value   = (s.dropped * 0.01)::float8{touch}
    FROM sums AS s
    WHERE k.killmail_id = s.killmail_id
      AND NOT s.no_victim
      AND {mode_predicate}
    RETURNING 1
)
SELECT (SELECT count(*) FROM written),
       array(SELECT s.killmail_id FROM sums AS s WHERE s.no_victim ORDER BY 1)
