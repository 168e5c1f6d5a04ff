-- Whether the table has a row (demo-data fills only an empty killboard).
-- {table}: a table name from the fixed tuples in bulk/db.py, never user text.
SELECT EXISTS (SELECT 1 FROM {table})
