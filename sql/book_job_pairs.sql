-- A job's (type, price date) pairs, gathered before its build into a
-- temporary table of the build's transaction (gone at its end). A statement
-- of its own because PostgreSQL plans no parallel workers for an INSERT,
-- and the pairs of a job read every line of its killmails (7 million lines
-- for 300,000 killmails: 3.2 s with two workers against 6.0 s without).
-- {wanted}: sql/book_wanted.sql, filled for the job.
CREATE TEMP TABLE bulk_book_job ON COMMIT DROP AS
{wanted}
