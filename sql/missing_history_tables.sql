-- The kill-date price tables (sql/history_schema.sql) this database lacks:
-- --rules evekill | zkillboard read them, and run/work/verify never create them.
SELECT t.name
FROM (VALUES ('market_price_history'), ('price_overrides')) AS t (name)
WHERE to_regclass(t.name) IS NULL
ORDER BY t.name
