-- The start of every builder (sql/book_build_<rules>.sql): the pairs wanted,
-- and of those the ones the book lacks or holds stale ({recheck} TRUE: all of
-- them, for seed, whose few thousand prices are cheaper to recompute than to
-- track: a row is only written where its prices changed).
--
-- Placeholders, from fixed text (bulk/engine/book.py, rules.py), never user text:
--   {wanted} a query of (type_id, price_date)   {book} the book's key as a literal
--   {recheck} TRUE or FALSE
wanted AS (
{wanted}
),
needed AS MATERIALIZED (
    SELECT w.type_id, w.price_date
    FROM wanted AS w
    LEFT JOIN bulk_price_book AS p
           ON p.book = {book} AND p.price_date = w.price_date AND p.type_id = w.type_id
    WHERE {recheck} OR p.type_id IS NULL OR p.stale
    -- In index order: the history probes then walk its primary key forwards,
    -- page after page, instead of at random.
    ORDER BY w.type_id, w.price_date
)
