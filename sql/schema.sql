-- The killboard tables bulk-backfill works on, as init-db and demo-data make
-- them (docs/commands.md). The tool runs on killreport's own too, whose types
-- and extra columns differ: tests/schemas/killreport.sql.
-- Every statement is IF NOT EXISTS: running this on a live killboard that
-- already has these tables changes nothing and never touches its rows.

CREATE TABLE IF NOT EXISTS categories (
    id   integer PRIMARY KEY,
    name text    NOT NULL
);

CREATE TABLE IF NOT EXISTS item_groups (
    id          integer PRIMARY KEY,
    name        text    NOT NULL,
    category_id integer NOT NULL
);

CREATE TABLE IF NOT EXISTS types (
    id       integer PRIMARY KEY,
    name     text    NOT NULL,
    group_id integer NOT NULL
);

CREATE TABLE IF NOT EXISTS killmails (
    killmail_id     integer PRIMARY KEY,
    killmail_time   timestamp NOT NULL,
    total_value     double precision,
    destroyed_value double precision,
    dropped_value   double precision
);

CREATE TABLE IF NOT EXISTS victims (
    killmail_id  integer PRIMARY KEY REFERENCES killmails (killmail_id),
    ship_type_id integer NOT NULL
);

CREATE TABLE IF NOT EXISTS killmail_items (
    id                 bigserial PRIMARY KEY,
    killmail_id        integer NOT NULL REFERENCES killmails (killmail_id),
    item_type_id       integer NOT NULL,
    flag               integer NOT NULL DEFAULT 0,
    quantity_destroyed integer,
    quantity_dropped   integer,
    singleton          integer NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS killmail_items_killmail_id_idx ON killmail_items (killmail_id);

-- The producer's mode predicates and --since/--until filters scan these.
CREATE INDEX IF NOT EXISTS killmails_killmail_time_idx ON killmails (killmail_time);

CREATE TABLE IF NOT EXISTS market_prices (
    type_id    integer PRIMARY KEY,
    buy        double precision,
    sell       double precision,
    average    double precision,
    volume     double precision,
    updated_at timestamp
);
