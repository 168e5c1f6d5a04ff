-- Upsert history rows from {source} (history_staging, or unnest() of a fetch's
-- arrays: both fixed in bulk/prices/history.py), in primary-key order so each
-- row lands beside the one before it in the index. A row already stored with
-- the same values is not written again: no dead tuple, no WAL. Returns how
-- many rows were new and how many changed.
-- A (region, type, date) twice in {source} fails with cardinality_violation.
WITH written AS (
    INSERT INTO market_price_history AS h
        (region_id, type_id, date, average, highest, lowest, volume, order_count)
    SELECT region_id, type_id, date, average, highest, lowest, volume, order_count
    FROM {source}
    ORDER BY region_id, type_id, date
    ON CONFLICT (region_id, type_id, date) DO UPDATE SET
        average = excluded.average,
        highest = excluded.highest,
        lowest = excluded.lowest,
        volume = excluded.volume,
        order_count = excluded.order_count
    WHERE (h.average, h.highest, h.lowest, h.volume, h.order_count)
        IS DISTINCT FROM
        (excluded.average, excluded.highest, excluded.lowest, excluded.volume, excluded.order_count)
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
FROM written
