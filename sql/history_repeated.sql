-- The first (region, type, date) that an import gives twice, and the files
-- (by number) that give it.
SELECT region_id, type_id, date, array_agg(source ORDER BY source)
FROM history_staging
GROUP BY region_id, type_id, date
HAVING count(*) > 1
ORDER BY min(source), region_id, type_id, date
LIMIT 1
