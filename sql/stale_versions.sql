-- The first step of a `--mode stale` search (bulk/engine/stale.py): the versions
-- of the book {book} that its stamps hold, and how many stamps hold each. One
-- read of the stamps serves both sql/stale_moved.sql (what moved since each
-- version) and the choice of each version's route in sql/stale_ids.sql.
--
-- {book}: the book's key as a literal (bulk/engine/rules.py), never user text.
SELECT s.version, count(*)
FROM bulk_valuations AS s
WHERE s.book = {book}
GROUP BY s.version
ORDER BY s.version
