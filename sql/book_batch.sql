-- The start of every statement that values a batch from the price book
-- (sql/load_book.sql, sql/value_book.sql): the batch's killmails that match
-- the mode, with their price dates, and the book's rows of those dates.
--
-- Parameters: %(ids)b int[] (the batch), sent binary: as text, 500 IDs cost the
-- client more than the rest of the call.
-- Placeholders filled from fixed tables (bulk/engine/modes.py, rules.py), never user text:
--   {mode_predicate} on alias k   {book} the book's key as a literal
--   {price_date} the price date of killmail k under the book's rule set
--   {book_dates} the book's rows of the batch's price dates, a condition on alias p
--   {book_cte} MATERIALIZED, or NOT MATERIALIZED where {book_dates} is a constant
--
-- The book's rows of the batch's price dates are read once, by the primary
-- key's (book, price_date) prefix, and hashed: a probe of the key per line
-- cost more than the whole of seed's valuation. Its dates, not the range
-- between them: a selection spread over years (--ship-type) read every row
-- of the years between. Where every killmail has the same price date (seed's
-- 'today'), that constant is the condition and the CTE is inlined: the planner
-- then hashes the book's rows with the table's statistics (9.1 against 10.4 ms
-- a batch); inlined, the dates of a kill-date batch became an index probe per
-- line (60 against 12 ms).
batch AS (
    SELECT k.killmail_id, {price_date} AS price_date
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)b::int[])
      AND {mode_predicate}
),
book AS {book_cte} (
    SELECT p.price_date, p.type_id, p.ship, p.item, p.copy, p.bay, p.bad, p.usable
    FROM bulk_price_book AS p
    WHERE p.book = {book}
      AND {book_dates}
      -- A stale row is as good as missing: the batch builds it again first.
      AND NOT p.stale
),
-- The book's version, read in the snapshot the book's rows are read in: the
-- version the stamps of the batch name (sql/book_schema.sql).
book_version AS (
    SELECT coalesce((SELECT bv.version FROM bulk_book_versions AS bv WHERE bv.book = {book}),
                    0) AS version
)
