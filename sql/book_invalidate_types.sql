-- Marks stale every price book row of some types: their market price or their
-- type data (group, category) changed. Run in the transaction of the change.
-- Parameters: %(types)s int[].
UPDATE bulk_price_book AS p
SET stale = true
WHERE p.type_id = ANY(%(types)s::int[])
  AND NOT p.stale
