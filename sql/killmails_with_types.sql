-- How many killmails hold one of the given types, as ship or item: the killmails a
-- job run with --allow-incomplete values with gaps. Parameters: %(type_ids)s int[].
SELECT count(*)
FROM killmails k
WHERE EXISTS (SELECT 1 FROM victims v
              WHERE v.killmail_id = k.killmail_id AND v.ship_type_id = ANY (%(type_ids)s))
   OR EXISTS (SELECT 1 FROM killmail_items i
              WHERE i.killmail_id = k.killmail_id AND i.item_type_id = ANY (%(type_ids)s))
