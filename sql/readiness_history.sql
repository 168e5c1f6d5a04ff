-- The kill-date rule sets' price coverage: the used types that have a usable
-- daily average (above 0) in the rule set's region on or before the latest kill
-- date, or a price override. One index probe of each table per type.
-- Parameters: %(type_ids)s int[], %(region)s int.
SELECT u.type_id
FROM unnest(%(type_ids)s::int[]) AS u (type_id)
WHERE EXISTS (
          SELECT 1 FROM market_price_history h
          WHERE h.region_id = %(region)s AND h.type_id = u.type_id
            AND h.date <= (SELECT max(killmail_time)::date FROM killmails)
            AND h.average > 0
      )
   OR EXISTS (SELECT 1 FROM price_overrides o WHERE o.type_id = u.type_id)
