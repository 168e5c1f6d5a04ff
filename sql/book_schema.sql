-- The price book: the tool's own table of unit prices, one row per (book,
-- price date, type). A book is a rule set, with its price column for seed
-- ('seed:sell', 'evekill', 'zkillboard'). Only the builders
-- (sql/book_build_<rules>.sql) know the rules; the engines join the book by
-- equality (sql/book_batch.sql). Only init-db and the `prices …` / `types …`
-- commands run this file; run, queue and work never create tables.
--
-- price_date  the date the rule set prices the kill at; 'infinity' for seed,
--             whose prices are today's.
-- ship, item, copy, bay
--             unit cents of the type as the victim's ship, as an item line,
--             as an item line with singleton 2 (a blueprint copy), as an item
--             line in flag 179 (the frigate escape bay). NULL where the price
--             cannot be int8 cents; bad then holds it, in ISK.
-- stale       a price source changed since the row was built: the next job
--             (or `work` within its --price-refresh) builds it again.
-- changed_at  when the row's prices last changed (a rebuild that finds the
--             same prices keeps it).
CREATE TABLE IF NOT EXISTS bulk_price_book (
    book       text COLLATE "C" NOT NULL,
    price_date date             NOT NULL,
    type_id    integer          NOT NULL,
    ship       bigint,
    item       bigint,
    copy       bigint,
    bay        bigint,
    bad        numeric,
    stale      boolean          NOT NULL DEFAULT false,
    changed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (book, price_date, type_id)
);
-- A job's start finds the stale rows; a price change finds a type's rows.
CREATE INDEX IF NOT EXISTS bulk_price_book_stale_idx
    ON bulk_price_book (book) WHERE stale;
CREATE INDEX IF NOT EXISTS bulk_price_book_type_idx
    ON bulk_price_book (type_id, price_date);
