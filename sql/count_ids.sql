-- How many killmails match the mode and the filters (the progress bar's total).
-- {filters}: as in scan_ids.sql. Parameters: %(after)s int, plus the filters'.
SELECT count(*)
FROM killmails AS k
WHERE k.killmail_id > %(after)s
  AND {filters}
