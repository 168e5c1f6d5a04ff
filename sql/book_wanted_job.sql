-- A job's pairs, gathered by sql/book_job_pairs.sql: a builder's {wanted}.
SELECT j.type_id, j.price_date FROM pg_temp.bulk_book_job AS j
