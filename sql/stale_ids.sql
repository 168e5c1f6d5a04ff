-- The killmails a `--mode stale` job revalues under the book {book}, each with
-- why (bulk/engine/stale.py), one row per killmail:
--   never_valued   no value (with or without a stamp: a value removed since)
--   no_stamp       a value but no stamp: valued by something else
--   other_rules    a stamp of another book (rule set or price column)
--   book_rebuilt   a stamp below the book's floor: its prices are gone
--   now_priced     a line was unpriced (fallback, unknown type) and its
--                  type's price is now usable
--   prices_changed a type's unit cents in the book moved by more than
--                  %(min_change)s (a fraction: 0 is any cent) since the stamp
--
-- Its two parts, which bulk/engine/stale.py also runs apart, each on a connection
-- of its own: {moved_part} (sql/stale_part_moved.sql, the CTEs moved, held and
-- by_price) and {unstamped_part} (sql/stale_part_unstamped.sql, the CTE
-- unstamped). {book}: the book's key as a literal.
WITH {moved_part},
{unstamped_part},
unstamped_why AS (
    SELECT u.killmail_id,
           CASE
               WHEN u.never_valued THEN 'never_valued'
               WHEN s.book IS NULL THEN 'no_stamp'
               WHEN s.book <> {book} THEN 'other_rules'
               ELSE 'book_rebuilt'
           END AS reason
    FROM unstamped AS u
    LEFT JOIN LATERAL (
        SELECT s.book FROM bulk_valuations AS s WHERE s.killmail_id = u.killmail_id OFFSET 0
    ) AS s ON true
)
SELECT DISTINCT ON (f.killmail_id) f.killmail_id, f.reason
FROM (
    SELECT u.killmail_id, u.reason, 0 AS rank FROM unstamped_why AS u
    UNION ALL
    SELECT b.killmail_id, CASE WHEN b.now_priced THEN 'now_priced' ELSE 'prices_changed' END, 1
    FROM by_price AS b
) AS f
ORDER BY f.killmail_id, f.rank
-- The job's --limit (NULL: none), applied to the killmails found in ID order.
LIMIT %(stale_limit)s
