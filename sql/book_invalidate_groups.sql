-- Marks stale every price book row of the types in some groups (a group's
-- category changed, which fixes some rule sets' prices), in the transaction
-- of the change. Parameters: %(groups)s int[].
UPDATE bulk_price_book AS p
SET stale = true
FROM types AS t
WHERE t.group_id = ANY(%(groups)s::int[])
  AND p.type_id = t.id
  AND NOT p.stale
