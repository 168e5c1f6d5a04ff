-- Independent reference valuation, in exact numeric ISK, of the evekill rule
-- set (docs/prices.md). It shares no code with the engine
-- (the price book: book_build_evekill.sql, load_book.sql, pricing.py): it reads the
-- history tables directly, prices every (type, kill date) pair it meets, and
-- sums per killmail in ISK rather than cents.
--
-- Parameters: %(ids)s int[] or NULL for every killmail.
-- Placeholders, from the fixed data of bulk/engine/rules.py, never user text:
--   {region} {offset_s} (0: the kill date is the UTC date of killmail_time)
--   {fixed_values} rows (ord, kind, id, price): fixed prices by category or group
--   {line_values} rows (ord, kind, value, price): fixed prices of item lines
--   {fallback}
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
unit AS (
    SELECT p.type_id, p.on_date,
           round(CASE
                     WHEN ov.price IS NOT NULL THEN ov.price::numeric
                     WHEN fx.price IS NOT NULL THEN fx.price
                     WHEN latest.day IS NOT NULL
                         THEN (SELECT h.average::numeric
                               FROM market_price_history AS h
                               WHERE h.region_id = {region}
                                 AND h.type_id = p.type_id
                                 AND h.date = latest.day)
                     ELSE {fallback}
                 END, 2) AS price
    FROM pairs AS p
    LEFT JOIN types AS t ON t.id = p.type_id
    LEFT JOIN item_groups AS g ON g.id = t.group_id
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
    -- The last day on or before on_date with an average > 0.
    LEFT JOIN LATERAL (
        SELECT max(h.date) AS day
        FROM market_price_history AS h
        WHERE h.region_id = {region}
          AND h.type_id = p.type_id
          AND h.date <= p.on_date
          AND h.average > 0
    ) AS latest ON TRUE
),
{sums}
