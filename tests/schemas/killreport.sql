-- A stand-in for the schema of killreport, the killboard whose value backfill
-- bulk-backfill replaces (issue 13). Written from the column facts listed in
-- the issue, not copied from killreport's migrations: only the tables and
-- columns the tool can meet, with their NULLs, defaults, keys and indexes.
-- The ORM sets every updated_at itself, so those columns have no default.

CREATE TABLE categories (
    id         integer      PRIMARY KEY,
    name       text         NOT NULL,
    published  boolean      NOT NULL DEFAULT true,
    created_at timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp(3) NOT NULL
);

CREATE TABLE item_groups (
    id          integer      PRIMARY KEY,
    name        text         NOT NULL,
    category_id integer      NOT NULL,
    published   boolean      NOT NULL DEFAULT true,
    created_at  timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  timestamp(3) NOT NULL
);

CREATE TABLE types (
    id          integer          PRIMARY KEY,
    name        text             NOT NULL,
    description text,
    group_id    integer          NOT NULL,
    published   boolean          NOT NULL DEFAULT true,
    volume      double precision,
    capacity    double precision,
    mass        double precision,
    icon_id     integer,
    created_at  timestamp(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  timestamp(3)     NOT NULL
);

CREATE TABLE killmails (
    killmail_id         integer          PRIMARY KEY,
    killmail_hash       text             NOT NULL,
    killmail_time       timestamp(3)     NOT NULL,
    solar_system_id     integer          NOT NULL,
    total_value         double precision,
    destroyed_value     double precision,
    dropped_value       double precision,
    attacker_count      integer,
    related_campaign_id integer,
    is_war_related      boolean          NOT NULL DEFAULT false,
    created_at          timestamp(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at          timestamp(3)     NOT NULL
);

CREATE INDEX killmails_total_value_idx ON killmails (total_value DESC);

CREATE TABLE victims (
    killmail_id    integer          PRIMARY KEY
                   REFERENCES killmails (killmail_id) ON DELETE CASCADE,
    character_id   integer,
    corporation_id integer          NOT NULL,
    alliance_id    integer,
    faction_id     integer,
    ship_type_id   integer          NOT NULL,
    damage_taken   integer          NOT NULL,
    position_x     double precision,
    position_y     double precision,
    position_z     double precision,
    created_at     timestamp(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- killreport keeps only the top-level items of a killmail, never the contents
-- of containers.
CREATE TABLE killmail_items (
    id                 bigserial    PRIMARY KEY,
    killmail_id        integer      NOT NULL
                       REFERENCES killmails (killmail_id) ON DELETE CASCADE,
    item_type_id       integer      NOT NULL,
    flag               integer      NOT NULL,
    quantity_dropped   integer,
    quantity_destroyed integer,
    singleton          integer      NOT NULL,
    created_at         timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX killmail_items_killmail_id_idx ON killmail_items (killmail_id);
CREATE INDEX killmail_items_killmail_id_flag_idx ON killmail_items (killmail_id, flag);
CREATE INDEX killmail_items_item_type_id_idx ON killmail_items (item_type_id);

-- Unlike the tool's own schema: every price is NOT NULL (0 when unknown), and
-- a price needs its type in `types`.
CREATE TABLE market_prices (
    type_id    integer          PRIMARY KEY REFERENCES types (id) ON DELETE CASCADE,
    buy        double precision NOT NULL DEFAULT 0,
    sell       double precision NOT NULL DEFAULT 0,
    average    double precision NOT NULL DEFAULT 0,
    volume     double precision NOT NULL DEFAULT 0,
    created_at timestamp(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp(3)     NOT NULL
);
