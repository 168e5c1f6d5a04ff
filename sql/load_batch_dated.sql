-- load_batch.sql for the dated rule sets (--rules evekill | zkillboard): the
-- same one row of packed big-endian columns killmail_id (int4), line (int2: 0 ship,
-- 1 item, 2 no victim), unit_cents, qty_destroyed, qty_dropped, with every
-- unit price taken from the connection's cache (sql/dated_cents_table.sql)
-- by (rules, type, price date). The batch's pairs must have been resolved
-- first (sql/resolve_dated_<rules>.sql) on this connection.
--
-- Parameters: %(ids)b int[] (the batch), sent binary: as text, 500 IDs cost the
-- client more than the rest of the call.
-- Placeholders filled from fixed tables (bulk/engine/modes.py, rules.py), never user text:
--   {mode_predicate} on alias k   {rules} the rule set's name as a literal
--   {price_date} the price date of killmail k
--   {line_cents} WHEN branches: an item line i's own fixed price in cents
--                (blueprint copies; zkillboard: the frigate escape bay too)
--
-- The IDs are repeated on victims for the planner (see load_batch.sql).
-- The set-based engine appends sql/value_tail.sql to this file's WITH part.
--
-- Each line looks its pair up with a scalar subquery: one probe of the cache's
-- primary key, whatever the cache's size (a join would let the planner, which
-- has no statistics on a temporary table, hash the whole cache every batch).
-- A pair whose price cannot be int8 cents (cached as bad) fails the load of a
-- batch that uses it, and only such a batch: the cast raises 22003 (beyond
-- int8) or 0A000 (NaN, infinity), as a bad market_prices row does in
-- load_batch.sql. A pair missing from the cache is a bug, never a value of 0:
-- the cast of the text naming it raises 22P02.
WITH batch AS (
    SELECT k.killmail_id, {price_date} AS price_date
    FROM killmails AS k
    WHERE k.killmail_id = ANY(%(ids)b::int[])
      AND {mode_predicate}
),
lines AS (
    SELECT b.killmail_id,
           CASE WHEN v.killmail_id IS NULL THEN 2 ELSE 0 END::int2 AS line,
           CASE
               WHEN v.killmail_id IS NULL THEN 0
               ELSE coalesce(
                   (SELECT coalesce(c.cents, (c.bad * 100)::int8)
                    FROM pg_temp.bulk_dated_cents AS c
                    WHERE c.rules = {rules}
                      AND c.type_id = v.ship_type_id
                      AND c.price_date = b.price_date),
                   ('no dated price resolved for type ' || v.ship_type_id
                    || ' on ' || b.price_date)::int8)
           END AS unit_cents,
           1::int8 AS qty_destroyed,
           0::int8 AS qty_dropped
    FROM batch AS b
    LEFT JOIN victims AS v
           ON v.killmail_id = b.killmail_id AND v.killmail_id = ANY(%(ids)b::int[])

    UNION ALL

    SELECT i.killmail_id,
           1::int2,
           CASE
               {line_cents}
               ELSE coalesce(
                   (SELECT coalesce(c.cents, (c.bad * 100)::int8)
                    FROM pg_temp.bulk_dated_cents AS c
                    WHERE c.rules = {rules}
                      AND c.type_id = i.item_type_id
                      AND c.price_date = b.price_date),
                   ('no dated price resolved for type ' || i.item_type_id
                    || ' on ' || b.price_date)::int8)
           END,
           coalesce(i.quantity_destroyed, 0)::int8,
           coalesce(i.quantity_dropped, 0)::int8
    FROM batch AS b
    JOIN killmail_items AS i ON i.killmail_id = b.killmail_id
)
SELECT string_agg(int4send(killmail_id), ''::bytea)   AS killmail_id,
       string_agg(int2send(line), ''::bytea)          AS line,
       string_agg(int8send(unit_cents), ''::bytea)    AS unit_cents,
       string_agg(int8send(qty_destroyed), ''::bytea) AS qty_destroyed,
       string_agg(int8send(qty_dropped), ''::bytea)   AS qty_dropped
FROM lines
