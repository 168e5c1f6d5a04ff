-- How many killmails a `--mode stale` job would revalue, by reason (`status`).
-- {stale}: sql/stale_ids.sql as bulk/engine/stale.py filled it (fixed text; its
-- values are bound parameters), one row per killmail with its reason.
SELECT s.reason, count(*)
FROM ({stale}) AS s (killmail_id, reason)
GROUP BY 1
