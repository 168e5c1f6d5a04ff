-- The killmails that verify can audit (sql/written_ids.sql), each with the book
-- its stamp names (bulk_valuations), NULL where it has none: verify audits each
-- under the rule set that valued it.
SELECT k.killmail_id, s.book
FROM killmails AS k
JOIN victims AS v ON v.killmail_id = k.killmail_id
LEFT JOIN bulk_valuations AS s ON s.killmail_id = k.killmail_id
WHERE k.total_value IS NOT NULL
ORDER BY k.killmail_id
