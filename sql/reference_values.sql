-- Independent reference valuation, in exact numeric ISK, of the rules in
-- docs/prices.md ("Valuation rules"). It shares no code with the engine (the
-- price book, load_book.sql, pricing.py): it is written per killmail with
-- correlated sums, in ISK rather than cents, so a mistake in one is not
-- silently repeated in the other.
--
-- Parameters: %(ids)s int[] or NULL for every killmail.
-- Placeholder: {price_column} (sell | buy | average), from a fixed table.
--
-- Columns: killmail_id, total, destroyed, dropped (numeric ISK).
-- Killmails without a victim are not valued and do not appear.
SELECT k.killmail_id,
       ship.value + items.destroyed + items.dropped AS total,
       ship.value + items.destroyed                 AS destroyed,
       items.dropped                                AS dropped
FROM killmails AS k
JOIN victims AS v ON v.killmail_id = k.killmail_id
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN v.ship_type_id = 670 THEN 10.00::numeric
               ELSE coalesce((SELECT round(p.{price_column}::numeric, 2)
                              FROM market_prices AS p
                              WHERE p.type_id = v.ship_type_id), 0)
           END AS value
) AS ship
CROSS JOIN LATERAL (
    SELECT coalesce(sum(priced.unit * coalesce(i.quantity_destroyed, 0)), 0) AS destroyed,
           coalesce(sum(priced.unit * coalesce(i.quantity_dropped, 0)), 0)   AS dropped
    FROM killmail_items AS i
    CROSS JOIN LATERAL (
        SELECT CASE
                   WHEN i.singleton = 2 AND EXISTS (
                       SELECT 1
                       FROM types AS t
                       JOIN item_groups AS g ON g.id = t.group_id
                       JOIN categories AS c ON c.id = g.category_id
                       WHERE t.id = i.item_type_id AND c.name = 'Blueprint'
                   ) THEN 0.01::numeric
                   ELSE coalesce((SELECT round(p.{price_column}::numeric, 2)
                                  FROM market_prices AS p
                                  WHERE p.type_id = i.item_type_id), 0)
               END AS unit
    ) AS priced
    WHERE i.killmail_id = k.killmail_id
) AS items
WHERE %(ids)s::int[] IS NULL OR k.killmail_id = ANY(%(ids)s::int[])
