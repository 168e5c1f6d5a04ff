-- Upsert history rows from {source} (history_staging, or unnest() of a fetch's
-- arrays: both fixed in bulk/prices/history.py), in primary-key order so each
-- row lands beside the one before it in the index. A row already stored with
-- the same values is not written again: no dead tuple, no WAL. Returns how
-- many rows were new and how many changed.
-- A (region, type, date) twice in {source} fails with cardinality_violation.
-- An average-only source stages the columns it lacks as NaN and -1 (no checked row
-- holds them): NULL on a new row, and an existing row keeps what it had there.
WITH written AS (
    INSERT INTO market_price_history AS h
        (region_id, type_id, date, average, highest, lowest, volume, order_count)
    SELECT region_id, type_id, date, average,
           nullif(highest, 'NaN'), nullif(lowest, 'NaN'),
           nullif(volume, -1), nullif(order_count, -1)
    FROM {source}
    ORDER BY region_id, type_id, date
    ON CONFLICT (region_id, type_id, date) DO UPDATE SET
        average = excluded.average,
        highest = coalesce(excluded.highest, h.highest),
        lowest = coalesce(excluded.lowest, h.lowest),
        volume = coalesce(excluded.volume, h.volume),
        order_count = coalesce(excluded.order_count, h.order_count)
    WHERE (h.average, h.highest, h.lowest, h.volume, h.order_count)
        IS DISTINCT FROM
        (excluded.average, coalesce(excluded.highest, h.highest),
         coalesce(excluded.lowest, h.lowest), coalesce(excluded.volume, h.volume),
         coalesce(excluded.order_count, h.order_count))
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
FROM written
