-- Marks stale the price book rows a market history change reaches, in the
-- transaction of the change. Each type comes with the earliest day of it that
-- changed; the rule sets in %(after)s price from the days on or before a date
-- (so rows from that day on change), those in %(all)s read every row of the
-- type (zkillboard's walk limit counts them all).
-- Parameters: %(types)s int[], %(days)s date[] (one per type), %(after)s text[], %(all)s text[].
UPDATE bulk_price_book AS p
SET stale = true
FROM unnest(%(types)s::int[], %(days)s::date[]) AS c (type_id, day)
WHERE p.type_id = c.type_id
  AND NOT p.stale
  AND (p.book = ANY(%(all)s::text[])
       OR (p.book = ANY(%(after)s::text[]) AND p.price_date >= c.day))
