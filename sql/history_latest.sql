-- The newest day stored per type in a region, for the types asked about
-- (a type with no history is absent). Walks the primary key: one short
-- backward index scan per type. Days after %(newest)s (tomorrow) are not
-- believed: one such day would make the type look up to date for good.
SELECT t.type_id, latest.date
FROM unnest(%(type_ids)s::int4[]) AS t (type_id)
CROSS JOIN LATERAL (
    SELECT h.date
    FROM market_price_history h
    WHERE h.region_id = %(region_id)s AND h.type_id = t.type_id
      AND h.date <= %(newest)s::date
    ORDER BY h.date DESC
    LIMIT 1
) AS latest
