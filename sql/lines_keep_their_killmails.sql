-- Whether every victim row and item line has its killmail: true where both
-- victims and killmail_items reference killmails by killmail_id through a
-- validated foreign key whose triggers are all enabled (a line then cannot
-- outlive its killmail, nor be written without one). A killboard without them
-- may delete a killmail and keep its lines and stamp, which the stale search
-- must then probe for (bulk/engine/stale.py).
--
-- Not caught: rows deleted or written while the keys' triggers did not fire
-- (session_replication_role = replica, as a restore or a replica's apply runs;
-- triggers disabled then enabled again). Such a line's killmail is then found
-- stale by every job, and skipped by each (it cannot be valued).
SELECT count(DISTINCT c.conrelid) = 2
FROM pg_constraint AS c
JOIN pg_attribute AS a
  ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] AND a.attname = 'killmail_id'
JOIN pg_attribute AS r
  ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1] AND r.attname = 'killmail_id'
WHERE c.contype = 'f'
  AND c.convalidated
  AND cardinality(c.conkey) = 1
  AND c.confrelid = to_regclass('killmails')
  AND c.conrelid IN (to_regclass('victims'), to_regclass('killmail_items'))
  AND NOT EXISTS (
      SELECT 1 FROM pg_trigger AS t WHERE t.tgconstraint = c.oid AND t.tgenabled = 'D')
