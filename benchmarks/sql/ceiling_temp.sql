-- Ceiling formulation "temp": as "int8", but the unit cents and the blueprint
-- flag come from the connection's TEMP table (ceiling_temp_prices.sql), joined
-- by type as one int8 column: no rounding and no category joins per line.
-- Mode null. Parameters: %(lo)s, %(hi)s: the killmail_id range (lo, hi].
WITH todo AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id > %(lo)s AND k.killmail_id <= %(hi)s
      AND k.total_value IS NULL
),
ship AS (
    SELECT t.killmail_id,
           CASE WHEN v.ship_type_id = 670 THEN 1000 ELSE coalesce(u.cents, 0) END AS cents
    FROM todo AS t
    JOIN victims AS v ON v.killmail_id = t.killmail_id
    LEFT JOIN ceiling_unit AS u ON u.type_id = v.ship_type_id
),
items AS (
    SELECT i.killmail_id,
           sum(p.cents * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(p.cents * coalesce(i.quantity_dropped, 0))   AS dropped
    FROM todo AS t
    JOIN killmail_items AS i ON i.killmail_id = t.killmail_id
    LEFT JOIN ceiling_unit AS u ON u.type_id = i.item_type_id
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN i.singleton = 2 AND u.blueprint THEN 1::int8
                   ELSE coalesce(u.cents, 0)
               END AS cents
    ) AS p
    GROUP BY i.killmail_id
)
UPDATE killmails AS k
SET total_value     = ((s.cents + coalesce(it.destroyed, 0) + coalesce(it.dropped, 0)) * 0.01)::float8,
    destroyed_value = ((s.cents + coalesce(it.destroyed, 0)) * 0.01)::float8,
    dropped_value   = (coalesce(it.dropped, 0) * 0.01)::float8
FROM ship AS s
LEFT JOIN items AS it ON it.killmail_id = s.killmail_id
WHERE k.killmail_id = s.killmail_id
  AND k.total_value IS NULL
