-- Resolves, once per connection, the zkillboard unit price of every (type,
-- price date) pair a batch needs and the cache (sql/dated_cents_table.sql)
-- lacks: one statement, whatever the number of pairs.
--
-- Parameters: %(ids)b int[] (the batch, sent binary). Every killmail of the batch is
-- resolved, whatever its values: the load's mode check runs later, in another
-- snapshot, and must find every pair it needs.
-- Placeholders filled from the fixed tables of bulk/engine/rules.py, never user text:
--   {rules} the rule set's name as a literal   {region} the market region
--   {price_date} the price date of killmail k  {type_price} fixed price of type t / group g
--   {line_exempt} item lines i priced by the line itself (blueprint copies, escape bay)
--   {fallback} the price without any other    {max_cents} int8's largest value
--   {window} {full_drop_low} {full_drop_high} {partial_min} {partial_drop_high}
--
-- zKillboard's rule for a type on the price date (UTC date of kill time - 3,601 s):
-- 1. a price override valid on the price date (as in resolve_dated_evekill.sql);
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
--
-- How, per statement: each pair left after 1 and 2 reads at most {window}
-- rows from the primary key (region_id, type_id, date) backwards (cand), and
-- keeps them as an array sorted by value, so no sort spans the batch. The
-- walk's day limit only bites when a type has fewer history rows than the
-- days its candidates span: each type's rows are counted once per connection
-- (pg_temp.bulk_dated_history_rows, emptied with the price cache; counted);
-- a pair it bites is read again with the limit (walked). Every step after
-- cand keeps one row per pair and joins only counted, by type: the planner has no statistics on
-- these CTEs, and a join back by pair could turn into a nested loop over both.
WITH batch AS (
    SELECT k.killmail_id, {price_date} AS price_date
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)b::int[])
),
wanted AS (
    SELECT v.ship_type_id AS type_id, b.price_date
    FROM batch AS b
    JOIN victims AS v ON v.killmail_id = b.killmail_id

    UNION

    SELECT i.item_type_id, b.price_date
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
    WHERE NOT {line_exempt}
),
missing AS MATERIALIZED (
    SELECT w.type_id, w.price_date,
           coalesce(
               (SELECT o.price::numeric
                FROM price_overrides AS o
                WHERE o.type_id = w.type_id
                  AND (o.valid_from IS NULL OR o.valid_from <= w.price_date)
                  AND (o.valid_to IS NULL OR o.valid_to >= w.price_date)
                ORDER BY o.valid_from DESC NULLS LAST, o.id DESC
                LIMIT 1),
               {type_price}
           ) AS fixed
    FROM wanted AS w
    LEFT JOIN types AS t ON t.id = w.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    -- A probe of the cache's key per pair, not NOT EXISTS: the planner hashed
    -- the whole cache for that, in every batch, a cost that grows with the job.
    WHERE (SELECT 1
           FROM pg_temp.bulk_dated_cents AS c
           WHERE c.rules = {rules} AND c.type_id = w.type_id AND c.price_date = w.price_date
          ) IS NULL
    -- In index order: cand then walks the history's primary key forwards,
    -- page after page, instead of at random (7% less time at batch 500).
    ORDER BY w.type_id, w.price_date
),
cand AS MATERIALIZED (
    -- One row per missing pair (an aggregate always gives one): the newest
    -- {window} averages > 0 on or before its price date, sorted by value,
    -- read only where no fixed price applies (a one-time filter per pair).
    SELECT m.type_id, m.price_date, m.fixed, w.oldest, w.own, w.sorted
    FROM missing AS m
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
counted_types AS (
    SELECT DISTINCT type_id FROM cand WHERE oldest IS NOT NULL
),
new_counts AS (
    -- A data-modifying CTE: this statement sees the new rows only through
    -- RETURNING, so counted takes them from here and the cached ones from the table.
    INSERT INTO pg_temp.bulk_dated_history_rows (region_id, type_id, history_rows)
    SELECT {region}, n.type_id,
           (SELECT count(*)::int
            FROM market_price_history AS h
            WHERE h.region_id = {region} AND h.type_id = n.type_id)
    FROM counted_types AS n
    WHERE NOT EXISTS (
        SELECT 1
        FROM pg_temp.bulk_dated_history_rows AS r
        WHERE r.region_id = {region} AND r.type_id = n.type_id
    )
    RETURNING type_id, history_rows
),
counted AS MATERIALIZED (
    SELECT r.type_id, r.history_rows
    FROM pg_temp.bulk_dated_history_rows AS r
    JOIN counted_types AS n ON n.type_id = r.type_id
    WHERE r.region_id = {region}

    UNION ALL

    SELECT type_id, history_rows FROM new_counts
),
walked AS (
    -- Every candidate is reached when the oldest is: days back < history rows
    -- (history_rows equals the span only when the type may have more). Else
    -- the walk stops earlier: read the pair again within its day limit.
    SELECT c.type_id, c.price_date, c.fixed, c.own,
           CASE
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
    LEFT JOIN counted AS r ON r.type_id = c.type_id
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
               END,
               {fallback}
           ), 2) AS unit
    FROM windowed AS x
)
INSERT INTO pg_temp.bulk_dated_cents (rules, type_id, price_date, cents, bad)
SELECT {rules}, p.type_id, p.price_date,
       -- NaN compares above every number, so it is bad with the infinities.
       CASE WHEN abs(p.unit) * 100 <= {max_cents} THEN (p.unit * 100)::int8 END,
       CASE WHEN abs(p.unit) * 100 <= {max_cents} THEN NULL ELSE p.unit END
FROM priced AS p
ON CONFLICT DO NOTHING
