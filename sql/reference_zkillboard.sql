-- Independent reference valuation, in exact numeric ISK, of the zkillboard
-- rule set (docs/prices.md). It shares no code with the engine
-- (the price book: book_build_zkillboard.sql, load_book.sql, pricing.py): it reads
-- the history tables directly, prices every (type, price date) pair it meets,
-- trims the market window by rank with row_number(), and sums per
-- killmail in ISK rather than cents.
--
-- Parameters: %(ids)s int[] or NULL for every killmail.
-- Placeholders, from the fixed data of bulk/engine/rules.py, never user text:
--   {region} {offset_s} (the price date is the UTC date of killmail_time - offset_s)
--   {fixed_values} rows (ord, kind, id, price): fixed prices by category or group
--   {line_values} rows (ord, kind, value, price): fixed prices of item lines
--   {fallback} {window} {full_drop_low} {full_drop_high} {partial_min} {partial_drop_high}
--   {sums}  sql/reference_dated_sums.sql, the end both kill-date references share
--
-- Columns: killmail_id, total, destroyed, dropped (numeric ISK).
-- Killmails without a victim are not valued and do not appear.
WITH fixed (ord, kind, id, price) AS {fixed_values},
line_fixed (ord, kind, value, price) AS {line_values},
scope AS (
    SELECT k.killmail_id, v.ship_type_id,
           (k.killmail_time - {offset_s} * interval '1 second')::date AS on_date
    FROM killmails AS k
    JOIN victims AS v ON v.killmail_id = k.killmail_id
    WHERE %(ids)s::int[] IS NULL OR k.killmail_id = ANY(%(ids)s::int[])
),
pairs AS (
    SELECT s.ship_type_id AS type_id, s.on_date FROM scope AS s
    UNION
    SELECT i.item_type_id, s.on_date
    FROM scope AS s
    JOIN killmail_items AS i ON i.killmail_id = s.killmail_id
),
history_rows AS (
    -- Every history row of each type met, in the region: the walk's day limit.
    SELECT h.type_id, count(*) AS n
    FROM market_price_history AS h
    WHERE h.region_id = {region} AND h.type_id IN (SELECT type_id FROM pairs)
    GROUP BY h.type_id
),
unit AS (
    SELECT p.type_id, p.on_date,
           round(CASE
                     WHEN ov.price IS NOT NULL THEN ov.price::numeric
                     WHEN fx.price IS NOT NULL THEN fx.price
                     WHEN mk.mean IS NULL THEN {fallback}
                     WHEN own.average > 0 AND own.average::numeric < mk.mean
                         THEN own.average::numeric
                     ELSE mk.mean
                 END, 2) AS price
    FROM pairs AS p
    LEFT JOIN types AS t ON t.id = p.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
    LEFT JOIN history_rows AS hr ON hr.type_id = p.type_id
    LEFT JOIN LATERAL (
        SELECT o.price
        FROM price_overrides AS o
        WHERE o.type_id = p.type_id
          AND p.on_date BETWEEN coalesce(o.valid_from, '-infinity'::date)
                            AND coalesce(o.valid_to, 'infinity'::date)
        ORDER BY coalesce(o.valid_from, '-infinity'::date) DESC, o.id DESC
        LIMIT 1
    ) AS ov ON TRUE
    LEFT JOIN LATERAL (
        SELECT f.price
        FROM fixed AS f
        WHERE (f.kind = 'category' AND f.id = g.category_id)
           OR (f.kind = 'group' AND f.id = t.group_id)
        ORDER BY f.ord
        LIMIT 1
    ) AS fx ON TRUE
    -- The walk: the days on_date, on_date - 1, ... for as many days as the type
    -- has history rows (at least one day); it keeps the newest {window} averages
    -- > 0. Ranked by value (pos) among the n kept: with {window} prices skip the
    -- {full_drop_low} lowest and the {full_drop_high} highest; from {partial_min},
    -- the {partial_drop_high} highest; fewer, none. numeric(1000, 30): avg
    -- carries 30 decimals, so rounding to the cent after it is never a second rounding.
    LEFT JOIN LATERAL (
        SELECT round(avg(r.average::numeric(1000, 30)) FILTER (
                   WHERE (r.n = {window}
                          AND r.pos > {full_drop_low}
                          AND r.pos <= {window} - {full_drop_high})
                      OR (r.n < {window} AND r.n >= {partial_min}
                          AND r.pos <= r.n - {partial_drop_high})
                      OR r.n < {partial_min}), 2) AS mean
        FROM (SELECT w.average,
                     row_number() OVER (ORDER BY w.average) AS pos,
                     count(*) OVER () AS n
              FROM (SELECT h.average
                    FROM market_price_history AS h
                    WHERE h.region_id = {region}
                      AND h.type_id = p.type_id
                      AND h.average > 0
                      AND h.date <= p.on_date
                      AND h.date > p.on_date - greatest(coalesce(hr.n, 0), 1)::int
                    ORDER BY h.date DESC
                    LIMIT {window}) AS w) AS r
    ) AS mk ON TRUE
    LEFT JOIN LATERAL (
        SELECT h.average
        FROM market_price_history AS h
        WHERE h.region_id = {region} AND h.type_id = p.type_id AND h.date = p.on_date
    ) AS own ON TRUE
),
{sums}
