-- Builds the zkillboard prices of the needed (type, price date) pairs into
-- the price book, in one statement, whatever the number of pairs: one
-- snapshot of the history, so a price is never a mix of two states of it.
-- {needed}: sql/book_needed.sql   {store}: sql/book_store.sql
-- {override}: sql/book_override.sql on pair n
-- Placeholders filled from the fixed tables of bulk/engine/rules.py, never user text:
--   {region} the market region   {type_price} fixed price of type t / group g
--   {fallback} the price without any other
--   {window} {full_drop_low} {full_drop_high} {partial_min} {partial_drop_high}
--
-- zKillboard's rule for a type on the price date (UTC date of kill time - 3,601 s):
-- 1. a price override valid on the price date (as in book_build_evekill.sql);
-- 2. the type's fixed price by category or group;
-- 3. the market window: walking back a day at a time from the price date
--    (inclusive), collect the daily averages > 0 of the region, until {window}
--    are collected or as many days have been walked as the type has history
--    rows in the region (all of them, any date, any average). With {window}
--    prices drop the {full_drop_low} lowest and {full_drop_high} highest; with
--    {partial_min} to {window} - 1 drop the {partial_drop_high} highest; fewer: keep all.
--    The mean, rounded to the cent, or the price date's own average where that
--    is lower (compared unrounded, as zKillboard does);
-- 4. no average at all: the fallback.
-- Line prices (blueprint copies, the escape bay) are shapes, applied by {store}.
--
-- How: each pair left after 1 and 2 reads at most {window} rows from the
-- primary key (region_id, type_id, date) backwards (cand), and keeps them as
-- an array sorted by value, so no sort spans the statement. The walk's day
-- limit only bites when a type has fewer history rows than the days its
-- candidates span, so each type's rows are counted only up to that span
-- (counted); a pair it bites is read again with the limit (walked).
WITH {needed},
fixedp AS MATERIALIZED (
    SELECT n.type_id, n.price_date,
           coalesce({override}, {type_price}) AS fixed
    FROM needed AS n
    LEFT JOIN types AS t ON t.id = n.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
),
cand AS MATERIALIZED (
    -- One row per pair (an aggregate always gives one): the newest {window}
    -- averages > 0 on or before its price date, sorted by value, read only
    -- where no fixed price applies.
    SELECT m.type_id, m.price_date, m.fixed, w.oldest, w.own, w.sorted
    FROM fixedp AS m
    CROSS JOIN LATERAL (
        SELECT min(h.date) AS oldest,
               max(h.average) FILTER (WHERE h.date = m.price_date) AS own,
               array_agg(h.average ORDER BY h.average) AS sorted
        FROM (
            SELECT h.date, h.average
            FROM market_price_history AS h
            WHERE m.fixed IS NULL
              AND h.region_id = {region}
              AND h.type_id = m.type_id
              AND h.date <= m.price_date
              AND h.average > 0
            ORDER BY h.date DESC
            LIMIT {window}
        ) AS h
    ) AS w
),
spans AS (
    SELECT c.type_id, max(c.price_date - c.oldest) AS span
    FROM cand AS c
    WHERE c.oldest IS NOT NULL AND isfinite(c.price_date)
    GROUP BY c.type_id
),
counted AS MATERIALIZED (
    -- The type's history rows, counted up to span + 1: a walk of span days
    -- or fewer reaches every candidate exactly when the type has more rows
    -- than the days walked, so rows beyond span + 1 change nothing.
    -- One jsonb object of type -> count, looked up per pair: a join of two
    -- CTEs, whose sizes the planner cannot know, became a nested loop of
    -- pairs x types (155 million comparisons for 67,000 pairs).
    SELECT coalesce(jsonb_object_agg(s.type_id, (
               SELECT count(*)::int
               FROM (SELECT 1
                     FROM market_price_history AS h
                     WHERE h.region_id = {region} AND h.type_id = s.type_id
                     LIMIT s.span + 1) AS r)), '{{}}'::jsonb) AS history_rows
    FROM spans AS s
),
walked AS (
    -- Every candidate is reached when the oldest is: days back < history rows.
    -- Else the walk stops earlier: read the pair again within its day limit.
    SELECT c.type_id, c.price_date, c.fixed, c.own,
           CASE
               -- A walk back from a kill at infinity never reaches a day of
               -- history (and date arithmetic on it fails): no window.
               WHEN NOT isfinite(c.price_date) THEN NULL
               WHEN c.oldest IS NULL OR c.price_date - c.oldest < r.history_rows THEN c.sorted
               ELSE (SELECT array_agg(h.average ORDER BY h.average)
                     FROM (SELECT h.average
                           FROM market_price_history AS h
                           WHERE h.region_id = {region}
                             AND h.type_id = c.type_id
                             AND h.date <= c.price_date
                             AND h.date > c.price_date - r.history_rows
                             AND h.average > 0
                           ORDER BY h.date DESC
                           LIMIT {window}) AS h)
           END AS sorted
    FROM cand AS c
    CROSS JOIN LATERAL (
        SELECT (n.history_rows ->> c.type_id::text)::int AS history_rows FROM counted AS n
    ) AS r
),
kept AS (
    SELECT w.type_id, w.price_date, w.fixed, w.own,
           CASE
               WHEN w.n = {window}
                   THEN w.sorted[{full_drop_low} + 1 : w.n - {full_drop_high}]
               WHEN w.n >= {partial_min} THEN w.sorted[1 : w.n - {partial_drop_high}]
               ELSE w.sorted
           END AS prices
    FROM (SELECT walked.*, cardinality(walked.sorted) AS n FROM walked) AS w
),
windowed AS MATERIALIZED (
    -- The divisor's scale of 20 makes PostgreSQL carry at least 20 decimals
    -- in the quotient, so rounding it to the cent is never a second rounding.
    SELECT k.type_id, k.price_date, k.fixed, k.own,
           (SELECT round(sum(x::numeric) / count(*)::numeric(40, 20), 2)
            FROM unnest(k.prices) AS x) AS mean
    FROM kept AS k
),
priced AS MATERIALIZED (
    SELECT x.type_id, x.price_date,
           round(coalesce(
               x.fixed,
               CASE
                   WHEN x.own > 0 AND x.own::numeric < x.mean THEN x.own::numeric
                   ELSE x.mean
               END
           ), 2) AS unit
    FROM windowed AS x
),
{store}
