-- types import / types fetch, step 1 of 2: the rows that are new. A row a file
-- gives no name for (the plain type_id,group_id,category_id CSV names neither
-- types nor groups) is named "<kind> <id>" until a file or ESI names it.
-- Placeholders, from the fixed table in bulk/typedata/store.py:
--   {table} types | item_groups | categories   {kind} type | group | category
--   {parent_column} ", group_id" / ", category_id" / nothing
--   {parent_array}  ", %(parents)s::int[]" or nothing
--   {stamps} {stamp_values}  created_at/updated_at where they have no default
-- Parameters: %(ids)s int[], %(names)s text[] (NULL = no name), %(parents)s int[].
INSERT INTO {table} (id, name{parent_column}{stamps})
SELECT u.id, coalesce(u.name, '{kind} ' || u.id){parent_value}{stamp_values}
FROM unnest(%(ids)s::int[], %(names)s::text[]{parent_array}) AS u (id, name{parent_alias})
ON CONFLICT (id) DO NOTHING
