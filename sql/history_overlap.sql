-- Whether any staged row may already be stored: per (region, type) staged,
-- one index range probe over the staged dates. When none can be, the rows go
-- in with a plain INSERT, about twice as fast as INSERT ... ON CONFLICT.
SELECT EXISTS (
    SELECT 1
    FROM (
        SELECT region_id, type_id, min(date) AS first_day, max(date) AS last_day
        FROM history_staging
        GROUP BY region_id, type_id
    ) AS staged
    WHERE EXISTS (
        SELECT 1
        FROM market_price_history h
        WHERE h.region_id = staged.region_id
          AND h.type_id = staged.type_id
          AND h.date BETWEEN staged.first_day AND staged.last_day
    )
)
