-- The book's rows some price source change marked stale: a builder's {wanted}.
-- Placeholder: {book} the book's key as a literal.
SELECT p.type_id, p.price_date
FROM bulk_price_book AS p
WHERE p.book = {book} AND p.stale
