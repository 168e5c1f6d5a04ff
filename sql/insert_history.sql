-- Insert the staged rows when none of them is stored yet (sql/history_overlap.sql
-- said so), in primary-key order: each row then lands beside the one before
-- it in the index instead of anywhere in it. A (region, type, date) twice in
-- the staging table fails with unique_violation.
-- An average-only source (zKillboard, evetreemap, type_id,date,average CSV) stages
-- the columns it lacks as NaN and -1, which no checked row holds: stored as NULL.
INSERT INTO market_price_history
    (region_id, type_id, date, average, highest, lowest, volume, order_count)
SELECT region_id, type_id, date, average,
       nullif(highest, 'NaN'), nullif(lowest, 'NaN'), nullif(volume, -1), nullif(order_count, -1)
FROM history_staging
ORDER BY region_id, type_id, date
