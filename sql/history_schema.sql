-- The tool's own price tables for valuing a killmail at its kill date (--rules
-- evekill | zkillboard). Only init-db and the `prices history …` / `prices
-- override …` commands run this; run and work never create tables.

-- One row per (region, type, day): the shape of ESI's
-- GET /markets/{region_id}/history/?type_id= and of EVE Ref's market-history CSV.
-- The primary key's order serves the rules' lookup: one region, one type,
-- the days on or before a date, newest first.
CREATE TABLE IF NOT EXISTS market_price_history (
    region_id   integer          NOT NULL,
    type_id     integer          NOT NULL,
    date        date             NOT NULL,
    average     double precision,
    highest     double precision,
    lowest      double precision,
    volume      bigint,
    order_count bigint,
    PRIMARY KEY (region_id, type_id, date)
);

-- Fixed prices for types the market cannot price (hulls, structures).
-- valid_from and valid_to are inclusive UTC dates; NULL means open-ended.
-- Where several overrides cover a kill date, the one with the latest
-- valid_from wins (an open start counts as earliest), then the highest id.
CREATE TABLE IF NOT EXISTS price_overrides (
    id         bigserial        PRIMARY KEY,
    type_id    integer          NOT NULL,
    valid_from date,
    valid_to   date,
    price      double precision NOT NULL,
    note       text,
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from <= valid_to)
);
CREATE INDEX IF NOT EXISTS price_overrides_type_id_idx ON price_overrides (type_id);
