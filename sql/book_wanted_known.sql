-- Every type the killboard knows a price or a type row of, at seed's price
-- date, and every type the book holds already (its price row may be gone):
-- a seed job's {wanted}. A type used in a killmail and known to none of them
-- is built when a batch finds it missing.
-- Placeholder: {book} the book's key as a literal.
SELECT mp.type_id, 'infinity'::date AS price_date FROM market_prices AS mp
UNION
SELECT t.id, 'infinity'::date FROM types AS t
UNION
SELECT p.type_id, p.price_date FROM bulk_price_book AS p WHERE p.book = {book}
