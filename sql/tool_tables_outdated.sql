-- Whether a tool table that exists lacks a column this version added to it
-- (made by an older version's init-db): init-db adds it.
SELECT EXISTS (
    SELECT 1
    FROM (VALUES ('bulk_price_book', 'usable'), ('bulk_book_versions', 'floor')) AS c (t, col)
    WHERE to_regclass(c.t) IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM pg_attribute AS a
                      WHERE a.attrelid = to_regclass(c.t) AND a.attname = c.col
                        AND NOT a.attisdropped)
)
