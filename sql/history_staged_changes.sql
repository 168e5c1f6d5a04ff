-- Each type of a history import's staged rows with the earliest day it
-- brings, in the regions some rule set reads: what
-- bulk.engine.book.invalidate_history marks stale.
-- Parameters: %(regions)s int[].
SELECT s.type_id, min(s.date)
FROM history_staging AS s
WHERE s.region_id = ANY(%(regions)s::int[])
GROUP BY s.type_id
