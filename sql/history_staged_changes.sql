-- Each type of a history import's staged rows with the earliest day it
-- brings: what bulk.engine.book.invalidate_history marks stale.
SELECT s.type_id, min(s.date) FROM history_staging AS s GROUP BY s.type_id
