-- The stale search's first part alone (bulk/engine/stale.py runs it beside
-- sql/stale_ids_unstamped.sql, and merges their IDs): the killmails stamped
-- before a price of theirs moved, ascending, at most %(stale_limit)s (NULL: all).
-- {moved_part}: sql/stale_part_moved.sql.
WITH {moved_part}
SELECT b.killmail_id
FROM by_price AS b
ORDER BY b.killmail_id
LIMIT %(stale_limit)s
