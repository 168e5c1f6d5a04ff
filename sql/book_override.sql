-- The price override of pair {pair} (type_id, price_date) valid on its price
-- date, or NULL: inclusive ends, NULL open; the latest valid_from wins, an open
-- start counting as earliest, then the highest id. A scalar subquery filled
-- into the kill-date builders' {override}.
(SELECT o.price::numeric
 FROM price_overrides AS o
 WHERE o.type_id = {pair}.type_id
   AND (o.valid_from IS NULL OR o.valid_from <= {pair}.price_date)
   AND (o.valid_to IS NULL OR o.valid_to >= {pair}.price_date)
 ORDER BY o.valid_from DESC NULLS LAST, o.id DESC
 LIMIT 1)
