-- The rows of one `prices history import`, checked and binary-COPYed here
-- before one upsert into market_price_history. Dropped at COMMIT (or on
-- ROLLBACK with the rest of the import).
-- source: the file's number in the command line, to name both files of a
-- (region, type, date) given twice.
CREATE TEMP TABLE history_staging (
    source      integer          NOT NULL,
    region_id   integer          NOT NULL,
    type_id     integer          NOT NULL,
    date        date             NOT NULL,
    average     double precision NOT NULL,
    highest     double precision NOT NULL,
    lowest      double precision NOT NULL,
    volume      bigint           NOT NULL,
    order_count bigint           NOT NULL
) ON COMMIT DROP
