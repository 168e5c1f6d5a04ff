-- The stale search's second part alone (bulk/engine/stale.py runs it beside
-- sql/stale_ids_moved.sql, and merges their IDs): the killmails without a value
-- or a stamp of the book, ascending, at most %(stale_limit)s (NULL: all).
-- {unstamped_part}: sql/stale_part_unstamped.sql.
WITH {unstamped_part}
SELECT u.killmail_id
FROM unstamped AS u
ORDER BY u.killmail_id
LIMIT %(stale_limit)s
