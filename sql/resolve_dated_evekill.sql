-- Resolves, once per connection, the evekill unit price of every (type, price
-- date) pair a batch needs and the cache (sql/dated_cents_table.sql) lacks:
-- one statement, whatever the number of pairs.
--
-- Parameters: %(ids)b int[] (the batch, sent binary). Every killmail of the batch is
-- resolved, whatever its values: the load's mode check runs later, in another
-- snapshot, and must find every pair it needs.
-- Placeholders filled from the fixed tables of bulk/engine/rules.py, never user text:
--   {rules} the rule set's name as a literal   {region} the market region
--   {price_date} the price date of killmail k  {type_price} fixed price of type t / group g
--   {line_exempt} item lines i priced by the line itself (blueprint copies)
--   {fallback} the price without any other    {max_cents} int8's largest value
--
-- EVE-KILL's rule for a type on the price date (the UTC kill date):
-- 1. a price override valid on that date (inclusive ends, NULL open; the
--    latest valid_from wins, an open start counting as earliest, then the highest id);
-- 2. the type's fixed price by category or group;
-- 3. the latest daily average > 0 on or before the date, in the region
--    (the primary key (region_id, type_id, date) read backwards, one row);
-- 4. otherwise the fallback.
-- The coalesce runs its scalar subqueries only as far as needed: a fixed
-- price never reads the history. The unit price is round(price::numeric, 2).
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
    SELECT w.type_id, w.price_date
    FROM wanted AS w
    -- A probe of the cache's key per pair, not NOT EXISTS: the planner hashed
    -- the whole cache for that, in every batch, a cost that grows with the job.
    WHERE (SELECT 1
           FROM pg_temp.bulk_dated_cents AS c
           WHERE c.rules = {rules} AND c.type_id = w.type_id AND c.price_date = w.price_date
          ) IS NULL
    -- In index order: the probes below then walk the history's primary key
    -- forwards, page after page, instead of at random (a fifth less time at batch 500).
    ORDER BY w.type_id, w.price_date
),
priced AS MATERIALIZED (
    SELECT m.type_id, m.price_date,
           round(coalesce(
               (SELECT o.price::numeric
                FROM price_overrides AS o
                WHERE o.type_id = m.type_id
                  AND (o.valid_from IS NULL OR o.valid_from <= m.price_date)
                  AND (o.valid_to IS NULL OR o.valid_to >= m.price_date)
                ORDER BY o.valid_from DESC NULLS LAST, o.id DESC
                LIMIT 1),
               {type_price},
               (SELECT h.average::numeric
                FROM market_price_history AS h
                WHERE h.region_id = {region}
                  AND h.type_id = m.type_id
                  AND h.date <= m.price_date
                  AND h.average > 0
                ORDER BY h.date DESC
                LIMIT 1),
               {fallback}
           ), 2) AS unit
    FROM missing AS m
    LEFT JOIN types AS t ON t.id = m.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
)
INSERT INTO pg_temp.bulk_dated_cents (rules, type_id, price_date, cents, bad)
SELECT {rules}, p.type_id, p.price_date,
       -- NaN compares above every number, so it is bad with the infinities.
       CASE WHEN abs(p.unit) * 100 <= {max_cents} THEN (p.unit * 100)::int8 END,
       CASE WHEN abs(p.unit) * 100 <= {max_cents} THEN NULL ELSE p.unit END
FROM priced AS p
ON CONFLICT DO NOTHING
