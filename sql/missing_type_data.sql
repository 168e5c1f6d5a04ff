-- What `types fetch --used-types` asks ESI for, one level at a time: the types a
-- killmail uses that `types` lacks; the groups those types (all of them) name
-- that item_groups lacks; the categories the groups name that categories lacks.
-- Rows: (kind, id) with kind 'types', 'groups' or 'categories'.
WITH used AS (
    SELECT ship_type_id AS type_id FROM victims
    UNION
    SELECT item_type_id FROM killmail_items
)
SELECT 'types', u.type_id FROM used u
WHERE NOT EXISTS (SELECT 1 FROM types t WHERE t.id = u.type_id)
UNION ALL
SELECT DISTINCT 'groups', t.group_id FROM types t
WHERE NOT EXISTS (SELECT 1 FROM item_groups g WHERE g.id = t.group_id)
UNION ALL
SELECT DISTINCT 'categories', g.category_id FROM item_groups g
WHERE NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = g.category_id)
ORDER BY 1 DESC, 2
