-- Ceiling formulation "numeric": seed's valuation rules (as the engine's
-- former sql/load_batch.sql and bulk/engine/pricing.py applied them) as one
-- set-based UPDATE ... FROM (aggregate), each line rounded to the cent in
-- numeric and the three category tables joined per line, stored exactly as
-- the engine stores them ((cents * 0.01)::float8).
-- Mode null. Parameters: %(lo)s, %(hi)s: the killmail_id range (lo, hi].
WITH todo AS (
    SELECT k.killmail_id
    FROM killmails AS k
    WHERE k.killmail_id > %(lo)s AND k.killmail_id <= %(hi)s
      AND k.total_value IS NULL
),
ship AS (
    SELECT t.killmail_id,
           CASE
               WHEN v.ship_type_id = 670 THEN 1000
               ELSE coalesce(round(mp.sell::numeric, 2) * 100, 0)
           END AS cents
    FROM todo AS t
    JOIN victims AS v ON v.killmail_id = t.killmail_id
    LEFT JOIN market_prices AS mp ON mp.type_id = v.ship_type_id
),
items AS (
    SELECT i.killmail_id,
           sum(u.cents * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(u.cents * coalesce(i.quantity_dropped, 0))   AS dropped
    FROM todo AS t
    JOIN killmail_items AS i ON i.killmail_id = t.killmail_id
    LEFT JOIN market_prices AS mp ON mp.type_id = i.item_type_id
    LEFT JOIN types AS ty ON ty.id = i.item_type_id
    LEFT JOIN item_groups AS g ON g.id = ty.group_id
    LEFT JOIN categories AS c ON c.id = g.category_id
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN i.singleton = 2 AND c.name = 'Blueprint' THEN 1
                   ELSE coalesce(round(mp.sell::numeric, 2) * 100, 0)
               END AS cents
    ) AS u
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
