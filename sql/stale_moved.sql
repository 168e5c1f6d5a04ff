-- The first step of a `--mode stale` search (bulk/engine/stale.py): the book's
-- (price date, type) pairs whose unit cents moved by more than %(min_change)s
-- (a fraction: 0 is any cent), or whose price became usable or unusable, since
-- each version that stamps of the book {book} hold (%(versions)s, from
-- sql/stale_versions.sql). One row per (version, pair):
-- since, price_date, type_id, now_priced (it was unusable, and is usable now).
--
-- The price a stamp's values used is the oldest change after the stamp's
-- version (bulk_price_book_changes), or the row itself where it has none:
-- compared with the row as it is now, a price that moved and came back is no
-- change, and small moves add up. Judged once per version the stamps hold (a
-- handful: one per build between jobs), not once per line.
--
-- {book}: the book's key as a literal (bulk/engine/rules.py), never user text.
WITH stamped_versions AS MATERIALIZED (
    SELECT DISTINCT v.version
    FROM unnest(%(versions)s::int8[]) AS v (version)
),
changed AS MATERIALIZED (
    SELECT c.price_date, c.type_id, max(c.version) AS last_version
    FROM bulk_price_book_changes AS c
    WHERE c.book = {book}
      AND c.version > (SELECT coalesce(min(v.version), 0) FROM stamped_versions AS v)
    GROUP BY c.price_date, c.type_id
),
-- The pairs that moved beyond %(min_change)s since each version the stamps
-- hold (a handful: one per job between two builds), judged once per version
-- rather than once per line: after a daily refresh that moves every price a
-- little, only the few that moved enough lead to killmails.
moved AS MATERIALIZED (
    SELECT v.version AS since, ch.price_date, ch.type_id,
           s_o.usable = false AND p.usable AS now_priced
    FROM stamped_versions AS v
    JOIN changed AS ch ON ch.last_version > v.version
    JOIN bulk_price_book AS p
      ON p.book = {book} AND p.price_date = ch.price_date AND p.type_id = ch.type_id
    CROSS JOIN LATERAL (
        SELECT o.ship, o.item, o.copy, o.bay, o.bad, o.usable
        FROM bulk_price_book_changes AS o
        WHERE o.book = {book} AND o.price_date = ch.price_date AND o.type_id = ch.type_id
          AND o.version > v.version
        ORDER BY o.version
        LIMIT 1
    ) AS s_o
    WHERE s_o.usable <> p.usable
       OR s_o.bad IS DISTINCT FROM p.bad
       OR EXISTS (
           SELECT 1
           FROM (VALUES (s_o.ship, p.ship), (s_o.item, p.item),
                        (s_o.copy, p.copy), (s_o.bay, p.bay)) AS x (was, now)
           WHERE x.was IS DISTINCT FROM x.now
             AND (x.was IS NULL OR x.now IS NULL
                  OR abs(x.now::numeric - x.was::numeric)
                     > %(min_change)s::numeric * abs(x.was::numeric)))
)
-- The price date as text: seed's is 'infinity', which Python's dates cannot hold.
SELECT m.since, m.price_date::text, m.type_id, m.now_priced FROM moved AS m
