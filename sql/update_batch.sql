-- Writes one batch of computed values in one statement.
-- Values arrive as integer cents: binary int8 parameters ($n, with their types
-- declared), or numeric text where a freak batch overflows int8. Times 0.01
-- is exact in numeric (a division could round to the division's scale), and
-- the one numeric -> float8 cast is correctly rounded, so the stored double
-- equals reference::float8 even above 2^53 cents.
--
-- {rows}            the VALUES placeholders, five per killmail: its id, three
--                   sums, and whether a line was unpriced (for its stamp)
-- {version}         the placeholder of the book's version the load read: every
--                   row written gets its stamp (bulk_valuations) in this
--                   statement, so a value and its stamp are written together or
--                   not at all.
-- {book}            the job's book as a literal (bulk/engine/rules.py)
-- The one row returned: the number of killmails written (each with its stamp).
-- {mode_predicate}  on alias k, from the fixed table in bulk/engine/modes.py;
--                   repeating it here makes the guard atomic: a row another
--                   worker wrote since the load no longer matches and is skipped.
-- {touch}           empty, or ", updated_at = <the statement's time>" where the
--                   table has that column (bulk.engine.modes.TOUCH_UPDATED_AT):
--                   set in this statement, so exactly the rows written get it.
WITH stamp AS (
    SELECT {version} AS version
),
written AS (
    UPDATE killmails AS k
    SET total_value     = (v.total_cents * 0.01)::float8,
        destroyed_value = (v.destroyed_cents * 0.01)::float8,
        dropped_value   = (v.dropped_cents * 0.01)::float8{touch}
    FROM (VALUES {rows}) AS v (killmail_id, total_cents, destroyed_cents, dropped_cents, unpriced)
    WHERE k.killmail_id = v.killmail_id
      AND {mode_predicate}
    RETURNING k.killmail_id, v.unpriced
),
-- A killmail's stamp is updated where it has one, inserted where not (an
-- upsert of every row locks each conflicting row first, which cost more than
-- the write); the insert keeps ON CONFLICT for a stamp added meanwhile.
restamped AS (
    UPDATE bulk_valuations AS vs
    SET book = {book}, version = st.version, valued_at = statement_timestamp(),
        unpriced = w.unpriced
    FROM written AS w, stamp AS st
    WHERE vs.killmail_id = w.killmail_id
    RETURNING vs.killmail_id
),
stamped AS (
    INSERT INTO bulk_valuations AS vs (killmail_id, book, version, valued_at, unpriced)
    SELECT w.killmail_id, {book}, st.version, statement_timestamp(),
           w.unpriced
    FROM written AS w, stamp AS st
    WHERE w.killmail_id NOT IN (SELECT r.killmail_id FROM restamped AS r)
    ON CONFLICT (killmail_id) DO UPDATE
    SET book = excluded.book, version = excluded.version, valued_at = excluded.valued_at,
        unpriced = excluded.unpriced
)
SELECT count(*) FROM written
