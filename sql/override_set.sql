-- Set one price override: an override of the same type and the same range
-- (valid_from and valid_to, NULL meaning open) is replaced, so the newest one
-- set gets the highest id, which wins among equal valid_from.
WITH gone AS (
    DELETE FROM price_overrides
    WHERE type_id = %(type_id)s
      AND valid_from IS NOT DISTINCT FROM %(valid_from)s::date
      AND valid_to IS NOT DISTINCT FROM %(valid_to)s::date
    RETURNING id
)
INSERT INTO price_overrides (type_id, valid_from, valid_to, price, note)
VALUES (%(type_id)s, %(valid_from)s::date, %(valid_to)s::date, %(price)s, %(note)s)
RETURNING id, (SELECT count(*) FROM gone)
