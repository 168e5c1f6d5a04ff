-- types import / types fetch, step 2 of 2: rows that exist and differ. A name
-- not given keeps the stored one; updated_at is set where the table has it.
-- Placeholders as in insert_type_rows.sql, and {touch}: ", updated_at = localtimestamp"
-- or nothing. Parameters as there.
UPDATE {table} AS t
SET name = coalesce(u.name, t.name){parent_set}{touch}
FROM unnest(%(ids)s::int[], %(names)s::text[]{parent_array}) AS u (id, name{parent_alias})
WHERE t.id = u.id
  AND (t.name{parent_t}) IS DISTINCT FROM (coalesce(u.name, t.name){parent_u})
