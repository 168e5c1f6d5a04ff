-- One keyset page of killmail IDs that match the mode and the filters.
-- Keyset on killmail_id, never OFFSET: rows leave the mode's predicate while
-- workers write them, and an OFFSET would then skip rows that still match.
-- {filters}: fixed fragments from bulk/engine/scan.py joined with AND, on alias k.
-- Parameters: %(after)s int, %(page)s int, plus those the filters name.
SELECT k.killmail_id
FROM killmails AS k
WHERE k.killmail_id > %(after)s
  AND {filters}
ORDER BY k.killmail_id
LIMIT %(page)s
