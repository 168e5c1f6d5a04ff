-- The index the readiness check reads the used types through (bulk/readiness.py):
-- created by init-db only with a killmail_items it creates itself, empty, never
-- on a killboard's existing table (building it there is the operator's call:
-- docs/commands.md, "types"). killreport has it, as killmail_items_item_type_id_idx.
CREATE INDEX IF NOT EXISTS killmail_items_item_type_id_idx ON killmail_items (item_type_id)
