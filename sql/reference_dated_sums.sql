-- The end both kill-date references share (sql/reference_evekill.sql,
-- sql/reference_zkillboard.sql): each killmail's sums from its lines, once each
-- reference has its CTEs `scope` (killmail_id, ship_type_id, on_date), `unit`
-- (type_id, on_date, price: the rule set's unit price in ISK, rounded to the
-- cent) and `line_fixed` (kind, value, price, ord: the fixed prices of a line's
-- singleton or flag, first match by ord). The sums are exact numeric ISK.
items AS (
    SELECT s.killmail_id,
           sum(x.unit * coalesce(i.quantity_destroyed, 0)) AS destroyed,
           sum(x.unit * coalesce(i.quantity_dropped, 0))   AS dropped
    FROM scope AS s
    JOIN killmail_items AS i ON i.killmail_id = s.killmail_id
    LEFT JOIN unit AS u ON u.type_id = i.item_type_id AND u.on_date = s.on_date
    CROSS JOIN LATERAL (
        SELECT coalesce(
                   (SELECT lf.price
                    FROM line_fixed AS lf
                    WHERE (lf.kind = 'singleton' AND lf.value = i.singleton)
                       OR (lf.kind = 'flag' AND lf.value = i.flag)
                    ORDER BY lf.ord
                    LIMIT 1),
                   u.price
               ) AS unit
    ) AS x
    GROUP BY s.killmail_id
)
SELECT s.killmail_id,
       ship.price + coalesce(it.destroyed, 0) + coalesce(it.dropped, 0) AS total,
       ship.price + coalesce(it.destroyed, 0)                           AS destroyed,
       coalesce(it.dropped, 0)                                          AS dropped
FROM scope AS s
JOIN unit AS ship ON ship.type_id = s.ship_type_id AND ship.on_date = s.on_date
LEFT JOIN items AS it ON it.killmail_id = s.killmail_id
