-- Every price override, by type, then in the order the rules rank them
-- (an open start first, the latest valid_from last; then by id).
SELECT id, type_id, valid_from, valid_to, price, note
FROM price_overrides
WHERE %(type_ids)s::int4[] IS NULL OR type_id = ANY (%(type_ids)s::int4[])
ORDER BY type_id, valid_from NULLS FIRST, id
