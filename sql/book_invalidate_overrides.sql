-- Marks stale the price book rows of some types in the books that read price
-- overrides, in the transaction of the override's change.
-- Parameters: %(types)s int[], %(books)s text[].
UPDATE bulk_price_book AS p
SET stale = true
WHERE p.type_id = ANY(%(types)s::int[])
  AND p.book = ANY(%(books)s::text[])
  AND NOT p.stale
