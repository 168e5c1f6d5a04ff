-- Every type a killmail uses, as used_types.sql, on a killboard with an index led
-- by killmail_items.item_type_id: a loose index scan (each step finds the next
-- larger type with one index probe), so the cost follows the number of distinct
-- types (tens of thousands), not the number of lines (billions on a big board).
-- Victims hold one row per killmail and have no such index: one pass over them.
WITH RECURSIVE item_types AS (
    (SELECT item_type_id FROM killmail_items ORDER BY item_type_id LIMIT 1)
    UNION ALL
    SELECT (SELECT i.item_type_id FROM killmail_items i
            WHERE i.item_type_id > t.item_type_id
            ORDER BY i.item_type_id LIMIT 1)
    FROM item_types t
    WHERE t.item_type_id IS NOT NULL
)
SELECT item_type_id AS type_id FROM item_types WHERE item_type_id IS NOT NULL
UNION
SELECT DISTINCT ship_type_id FROM victims
ORDER BY type_id
