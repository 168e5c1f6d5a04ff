-- The readiness check of run, queue, work and status: for each type the killmails
-- use, whether its type, group and category rows are there, and which price
-- columns hold a usable price (finite and above 0). One row per distinct type.
-- Parameters: %(type_ids)s int[] (distinct).
SELECT u.type_id,
       t.id IS NOT NULL                                         AS has_type,
       g.id IS NOT NULL                                         AS has_group,
       c.id IS NOT NULL                                         AS has_category,
       t.group_id,
       g.category_id,
       coalesce(p.buy > 0 AND p.buy < 'Infinity', false)         AS buy,
       coalesce(p.sell > 0 AND p.sell < 'Infinity', false)       AS sell,
       coalesce(p.average > 0 AND p.average < 'Infinity', false) AS average
FROM unnest(%(type_ids)s::int[]) AS u (type_id)
LEFT JOIN types t ON t.id = u.type_id
LEFT JOIN item_groups g ON g.id = t.group_id
LEFT JOIN categories c ON c.id = g.category_id
LEFT JOIN market_prices p ON p.type_id = u.type_id
ORDER BY u.type_id
