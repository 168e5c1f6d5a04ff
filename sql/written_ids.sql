-- The killmails that verify can audit: valued, with a victim (the reference
-- values only those), in id order so a seeded sample is reproducible.
SELECT k.killmail_id
FROM killmails AS k
JOIN victims AS v ON v.killmail_id = k.killmail_id
WHERE k.total_value IS NOT NULL
ORDER BY k.killmail_id
