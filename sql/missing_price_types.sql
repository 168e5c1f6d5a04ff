-- The type IDs among %(type_ids)s that `types` lacks: where market_prices.type_id
-- references types, their price rows are left out (and listed) rather than
-- failing the whole import on the foreign key.
SELECT t
FROM unnest(%(type_ids)s::int[]) AS t
WHERE NOT EXISTS (SELECT 1 FROM types WHERE types.id = t)
ORDER BY t
