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
    usable     boolean          NOT NULL DEFAULT true,
    stale      boolean          NOT NULL DEFAULT false,
    changed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (book, price_date, type_id)
);
-- A job's start finds the stale rows; a price change finds a type's rows.
CREATE INDEX IF NOT EXISTS bulk_price_book_stale_idx
    ON bulk_price_book (book) WHERE stale;
CREATE INDEX IF NOT EXISTS bulk_price_book_type_idx
    ON bulk_price_book (type_id, price_date);

-- usable: the row's price came from its source (a market price, history, an
-- override) for a type that `types` holds; false where the rule set's fallback
-- priced it or the type data is missing. A stamp records whether a killmail
-- used such a row. A book built before this column existed is rebuilt.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = 'bulk_price_book'::regclass
                     AND attname = 'usable' AND NOT attisdropped) THEN
        ALTER TABLE bulk_price_book ADD COLUMN usable boolean NOT NULL DEFAULT true;
        UPDATE bulk_price_book SET stale = true;
    END IF;
END
$$;

-- The book's version: a build that changes a row's prices raises its book's
-- version by one, in the build's transaction. A batch reads the version in the
-- snapshot it reads the book's rows in, so a stamp's version names exactly the
-- rows its values came from. floor: the first version of the book's rows as
-- they are (a build that finds the book empty starts above every stamp): a
-- stamp below it names prices that are gone, and is stale.
CREATE TABLE IF NOT EXISTS bulk_book_versions (
    book    text COLLATE "C" PRIMARY KEY,
    version bigint           NOT NULL,
    floor   bigint           NOT NULL
);
ALTER TABLE bulk_book_versions ADD COLUMN IF NOT EXISTS floor bigint NOT NULL DEFAULT 0;

-- The prices a row held before each change: the row's columns as they were up
-- to `version` (the version whose build changed them). The value a killmail
-- stamped at version v used is the oldest change above v, or the row itself
-- where it has none: `--mode stale --min-change` compares it with today's.
CREATE TABLE IF NOT EXISTS bulk_price_book_changes (
    book       text COLLATE "C" NOT NULL,
    price_date date             NOT NULL,
    type_id    integer          NOT NULL,
    version    bigint           NOT NULL,
    ship       bigint,
    item       bigint,
    copy       bigint,
    bay        bigint,
    bad        numeric,
    usable     boolean          NOT NULL,
    PRIMARY KEY (book, price_date, type_id, version)
);
CREATE INDEX IF NOT EXISTS bulk_price_book_changes_version_idx
    ON bulk_price_book_changes (book, version);

-- One stamp per valued killmail: what valued it. Written by the statement that
-- writes the killmail's values, so a value and its stamp exist together or not
-- at all. Never a column of the killboard's own tables.
-- book        the rule set, with its price column for seed ('seed:sell', 'evekill')
-- version     the book's version (bulk_book_versions) the values came from
-- valued_at   when the values were written
-- unpriced    some line was priced by the rule set's fallback, or its type is
--             missing from `types`
CREATE TABLE IF NOT EXISTS bulk_valuations (
    killmail_id bigint           PRIMARY KEY,
    book        text COLLATE "C" NOT NULL,
    version     bigint           NOT NULL,
    valued_at   timestamptz      NOT NULL,
    unpriced    boolean          NOT NULL
) WITH (fillfactor = 50);
-- fillfactor 50: every job that revalues a killmail rewrites its stamp. With half
-- of each page free, a rewrite is a HOT update beside the old row from the first
-- job on; at 90 the first rewrites moved most rows to new pages, with a new
-- index entry each, until the table had grown to about this size anyway. A table
-- of the version that made it at 90 is changed; a fillfactor an operator chose
-- is kept.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class
               WHERE oid = 'bulk_valuations'::regclass
                 AND 'fillfactor=90' = ANY(reloptions)) THEN
        ALTER TABLE bulk_valuations SET (fillfactor = 50);
    END IF;
END
$$;
