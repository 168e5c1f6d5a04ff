-- Whether every victim row and item line has its killmail: true where both
-- victims and killmail_items reference killmails by killmail_id through a
-- validated foreign key whose triggers all fire in ordinary sessions, none of
-- the three tables has partitions or inheritance children (whose triggers or
-- rows the keys on the parents do not cover), and sessions here are not
-- replicas by default. A line then cannot outlive its killmail, nor be written
-- without one. A killboard without such keys may delete a killmail and keep its
-- lines and stamp, which the stale search must then probe for
-- (bulk/engine/stale.py).
--
-- Not caught: rows deleted or written while the keys' triggers did not fire
-- (a session set to session_replication_role = replica, as a restore or a
-- replica's apply runs; triggers disabled then enabled again). Such a line's
-- killmail is then found stale by every job, and skipped by each (it cannot be
-- valued).
WITH tables AS (
    SELECT to_regclass('killmails') AS killmails,
           to_regclass('victims') AS victims,
           to_regclass('killmail_items') AS items
)
SELECT current_setting('session_replication_role') = 'origin'
       AND NOT EXISTS (
           SELECT 1 FROM pg_inherits AS h, tables AS t
           WHERE h.inhparent IN (t.killmails, t.victims, t.items))
       AND (SELECT count(DISTINCT c.conrelid)
            FROM pg_constraint AS c
            JOIN pg_attribute AS a
              ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             AND a.attname = 'killmail_id'
            JOIN pg_attribute AS r
              ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1]
             AND r.attname = 'killmail_id'
            CROSS JOIN tables AS t
            WHERE c.contype = 'f'
              AND c.convalidated
              AND cardinality(c.conkey) = 1
              AND c.confrelid = t.killmails
              AND c.conrelid IN (t.victims, t.items)
              -- 'O' and 'A' fire in ordinary sessions; 'D' never, 'R' on replicas only.
              AND NOT EXISTS (
                  SELECT 1 FROM pg_trigger AS g
                  WHERE g.tgconstraint = c.oid AND g.tgenabled NOT IN ('O', 'A'))) = 2
