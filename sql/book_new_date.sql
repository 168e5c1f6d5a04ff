-- (A condition, not a statement.) A killmail k whose price date has no row in the book yet: a job gathers the
-- pairs of those killmails only. On a date the book knows, the few pairs a
-- job may still lack (a type new to that day) are built by the batch that
-- finds them missing, so a job over killmails already priced reads none of
-- their lines before its first batch.
-- Placeholders: {book} the book's key as a literal, {price_date} of killmail k.
NOT EXISTS (
    SELECT 1 FROM bulk_price_book AS p
    WHERE p.book = {book} AND p.price_date = {price_date}
)
