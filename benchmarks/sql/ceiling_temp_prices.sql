-- Setup of ceiling formulation "temp", run once per connection: every type's
-- unit cents and blueprint flag in a TEMP table (written for the benchmark,
-- never shared with the engine, which prices from the price book).
CREATE TEMP TABLE ceiling_unit (
    type_id   int4 PRIMARY KEY,
    cents     int8 NOT NULL,
    blueprint bool NOT NULL
);
INSERT INTO ceiling_unit (type_id, cents, blueprint)
SELECT t.type_id,
       coalesce((round(mp.sell::numeric, 2) * 100)::int8, 0),
       coalesce(c.name = 'Blueprint', false)
FROM (SELECT type_id FROM market_prices UNION SELECT id FROM types) AS t
LEFT JOIN market_prices AS mp ON mp.type_id = t.type_id
LEFT JOIN types AS ty ON ty.id = t.type_id
LEFT JOIN item_groups AS g ON g.id = ty.group_id
LEFT JOIN categories AS c ON c.id = g.category_id;
ANALYZE ceiling_unit;
