-- The floor of the book {book} (sql/book_schema.sql): a stamp below it names
-- prices that are gone. Read before sql/stale_ids.sql and bound there as a
-- value, so that the planner knows how many stamps are at or above it (as a
-- subquery, it guessed a third, and gave up the parallel anti-join).
--
-- {book}: the book's key as a literal (bulk/engine/rules.py), never user text.
SELECT coalesce(max(bv.floor), 0)
FROM bulk_book_versions AS bv
WHERE bv.book = {book}
