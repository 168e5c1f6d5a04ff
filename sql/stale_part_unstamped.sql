-- The second part of the stale search (sql/stale_ids.sql), as a CTE for a WITH:
-- unstamped, the killmails without a value or without a stamp of the book at or
-- above its floor (%(stale_floor)s), one row each with whether it has no value.
-- {book} the book's key as a literal; {filters} the job's filters on alias k.
-- The killmails without a value, or whose value has no stamp of the book at or
-- above its floor: an anti-join against those stamps (a hash of their keys
-- alone, where a join of every stamp hashed its whole row). Why each is stale is
-- read at the end, for the few found: a probe here (a correlated subquery) would
-- keep the parallel workers out of the join.
unstamped AS (
    SELECT k.killmail_id, k.total_value IS NULL AS never_valued
    FROM killmails AS k
    WHERE NOT EXISTS (
              SELECT 1
              FROM bulk_valuations AS s
              WHERE s.killmail_id = k.killmail_id
                AND k.total_value IS NOT NULL
                AND s.book = {book}
                AND s.version >= %(stale_floor)s::int8)
      AND {filters}
)
