-- The stamps (bulk_valuations) of the killmails that exist, per book, with how
-- many of them were valued with an unpriced line.
SELECT s.book, count(*) AS killmails, count(*) FILTER (WHERE s.unpriced) AS unpriced
FROM bulk_valuations AS s
JOIN killmails AS k ON k.killmail_id = s.killmail_id
GROUP BY s.book
ORDER BY s.book
