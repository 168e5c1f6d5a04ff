-- Progress of the backfill: one pass over killmails, with the victim anti-join.
SELECT count(*)                                          AS killmails,
       count(*) FILTER (WHERE k.total_value IS NOT NULL) AS valued,
       count(*) FILTER (WHERE k.total_value IS NULL)     AS null_value,
       count(*) FILTER (WHERE k.total_value = 0)         AS zero_value,
       count(*) FILTER (WHERE v.killmail_id IS NULL)     AS no_victim
FROM killmails AS k
LEFT JOIN victims AS v ON v.killmail_id = k.killmail_id
