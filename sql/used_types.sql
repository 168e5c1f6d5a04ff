-- Every type a killmail uses: victim ships and items (what prices fetch asks ESI for).
SELECT ship_type_id AS type_id FROM victims
UNION
SELECT item_type_id FROM killmail_items
ORDER BY type_id
