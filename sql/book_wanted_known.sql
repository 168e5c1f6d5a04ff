-- Every type the killboard knows a price or a type row of, at seed's price
-- date: a seed job's {wanted}. A type used in a killmail and known to neither
-- table is built when a batch finds it missing.
SELECT mp.type_id, 'infinity'::date AS price_date FROM market_prices AS mp
UNION
SELECT t.id, 'infinity'::date FROM types AS t
