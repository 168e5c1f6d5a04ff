-- The book's rows a price command marked stale, which the next job rebuilds.
-- Parameter: %(book)s the book's key.
SELECT count(*) FROM bulk_price_book WHERE book = %(book)s AND stale
