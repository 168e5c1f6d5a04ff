-- The per-connection cache of kill-date unit prices (--rules evekill | zkillboard):
-- one row per (rule set, type, price date), resolved once by
-- sql/resolve_dated_<rules>.sql and joined by sql/load_batch_dated.sql.
-- A TEMP table: each database connection has its own, it is never written to
-- the killboard, and it is gone when the connection closes. Whoever refreshes
-- market_price_history or price_overrides under a running job truncates it.
--
-- cents is the unit price in integer cents (round(price::numeric, 2) * 100).
-- A price that cannot be int8 cents (NaN, infinite, beyond 9.2e16 ISK) is kept
-- as bad (numeric, the unit price in ISK) with cents NULL, so resolving never
-- fails a batch: only the load of a batch that uses the pair fails (22003 or
-- 0A000, as for market_prices today), and sql/unusable_dated.sql names it.
CREATE TEMP TABLE IF NOT EXISTS bulk_dated_cents (
    rules      text    NOT NULL,
    type_id    integer NOT NULL,
    price_date date    NOT NULL,
    cents      bigint,
    bad        numeric,
    PRIMARY KEY (rules, type_id, price_date),
    CHECK ((cents IS NULL) <> (bad IS NULL))
)
;

-- Beside it, zkillboard's walk limit: how many history rows a type has in a
-- region (any date, any average), counted once per connection, not once per
-- batch (each count reads all of the type's rows; at batch 500 on the bench
-- database, counting in every batch took about half of the resolve's time).
-- Emptied with the cache above.
CREATE TEMP TABLE IF NOT EXISTS bulk_dated_history_rows (
    region_id    integer NOT NULL,
    type_id      integer NOT NULL,
    history_rows integer NOT NULL,
    PRIMARY KEY (region_id, type_id)
)
