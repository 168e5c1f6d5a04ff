"""Market history files (pure functions): what is read, and why a line is refused."""

from datetime import date

import numpy as np
import pytest

from bulk.prices.files import PriceFileError
from bulk.prices.history_files import (
    csv_layout,
    esi_days,
    parse_csv_chunk,
    parse_esi_json,
    rows_from_tuples,
)

EVEREF = "average,date,highest,lowest,order_count,volume,http_last_modified,region_id,type_id"
# EVE Ref's older files put http_last_modified last.
EVEREF_OLD = "average,date,highest,lowest,order_count,volume,region_id,type_id,http_last_modified"
ESI_CSV = "average,date,highest,lowest,order_count,volume"


def _parse(body: str, header: str = EVEREF, **kw):
    kw.setdefault("region", 10000002)
    kw.setdefault("type_id", None)
    return parse_csv_chunk(body.encode(), 2, csv_layout(header), **kw)


def _as_tuples(rows):
    return list(
        zip(
            rows.region_id.tolist(),
            rows.type_id.tolist(),
            [str(d) for d in rows.date],
            rows.average.tolist(),
            rows.highest.tolist(),
            rows.lowest.tolist(),
            rows.volume.tolist(),
            rows.order_count.tolist(),
        )
    )


def test_everef_rows_of_both_header_orders_and_the_region_filter():
    new = (
        "785,2025-01-01,785,785,7,28404,2025-01-02T11:01:17Z,10000001,20\n"
        "3.2,2025-01-01,3.25,2.8,21,26294862,2025-01-02T11:01:17Z,10000002,34\n"
        "1e3,2025-01-01,1000.5,999,1,2,,10000002,35\n"
    )
    parsed = _parse(new)
    assert _as_tuples(parsed.rows) == [
        (10000002, 34, "2025-01-01", 3.2, 3.25, 2.8, 26294862, 21),
        (10000002, 35, "2025-01-01", 1000.0, 1000.5, 999.0, 2, 1),
    ]
    assert parsed.other_regions == 1
    # Rows are located by their line in the file, after the filter too.
    assert [parsed.where(0), parsed.where(1)] == ["line 3", "line 4"]
    assert len(_parse(new, all_regions=True).rows) == 3
    old = "3.2,2025-01-01,3.25,2.8,21,26294862,10000002,34,2025-01-02T11:01:17Z\n"
    assert _as_tuples(_parse(old, EVEREF_OLD).rows) == _as_tuples(_parse(new).rows)[:1]


def test_esi_csv_rows_get_the_given_type_and_region():
    body = "4.21,2023-12-01,4.23,4.19,2167,5376548540\n"
    parsed = _parse(body, ESI_CSV, region=10000043, type_id=34)
    assert _as_tuples(parsed.rows) == [
        (10000043, 34, "2023-12-01", 4.21, 4.23, 4.19, 5376548540, 2167)
    ]
    with pytest.raises(PriceFileError, match="line 1: no region_id,type_id columns.*--type-id"):
        _parse(body, ESI_CSV)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("", "line 1: empty file"),
        ("average,date,highest,lowest,order_count", "line 1: the header has no volume"),
        (ESI_CSV + ",price", "line 1: unknown column 'price'"),
        (ESI_CSV + ",region_id", "line 1: the header has region_id without"),
        (ESI_CSV + ",date", "line 1: a column is named twice"),
    ],
)
def test_a_bad_header_is_refused(header, error):
    with pytest.raises(PriceFileError, match=error):
        csv_layout(header)


GOOD = "4.2,2025-01-01,4.3,4.1,10,100,2025-01-02T11:01:17Z,10000002,34\n"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("abc,2025-01-01,4.3,4.1,10,100,x,10000002,34", "line 4: average 'abc' is not a number"),
        ("-4,2025-01-01,4.3,4.1,10,100,x,10000002,34", "line 4: average '-4' is not a price"),
        ("nan,2025-01-01,4.3,4.1,10,100,x,10000002,34", "line 4: average 'nan' is not a price"),
        ("4,2025-01-01,inf,4.1,10,100,x,10000002,34", "line 4: highest 'inf' is not a price"),
        ("4,2025-01-01,4,1e16,10,100,x,10000002,34", "line 4: lowest '1e16' is beyond 1e\\+15"),
        ("4,2025-01-01,4,4,1.5,100,x,10000002,34", "line 4: order_count '1.5' is not a whole"),
        ("4,2025-01-01,4,4,1,-1,x,10000002,34", "line 4: volume '-1' is not a whole number"),
        ("4,2025-01-01,4,4,1,1,x,0,34", "line 4: region_id '0' is not a positive"),
        ("4,2025-01-01,4,4,1,1,x,10000002,2147483648", "line 4: type_id '2147483648'"),
        ("4,2023-02-29,4,4,1,1,x,10000002,34", "line 4: date '2023-02-29' is not a date"),
        ("4,20250101,4,4,1,1,x,10000002,34", "line 4: date '20250101' is not a date"),
        ("4,2025-01-01T00:00,4,4,1,1,x,10000002,34", "line 4: date '2025-01-01T00:00'"),
        ("4,,4,4,1,1,x,10000002,34", "line 4: date '' is not a date"),
        (",2025-01-01,4,4,1,1,x,10000002,34", "line 4: average is empty"),
        ("4,2025-01-01,4,4,1,1,x,10000002", "line 4: 8 cells where the header has 9"),
        ("4,2025-01-01,4,4,1,1,x,10000002,34,5", "line 4: 10 cells where the header has 9"),
        ("4,2025-01-01,4,4,1_0,1,x,10000002,34", "line 4: order_count '1_0' is not a whole"),
    ],
)
def test_the_first_bad_line_is_named_with_the_reason(bad, error):
    # Line 2 is good, line 3 blank (skipped, still counted), line 4 bad.
    with pytest.raises(PriceFileError, match=error):
        _parse(GOOD + "\n" + bad + "\n" + GOOD)


def test_the_fast_and_the_careful_reader_agree():
    """A quoted cell sends the chunk to the csv module: the same rows come out."""
    body = GOOD + "5,2025-01-02,6,4,1,2,x,10000002,35\n\n7.25,2025-01-03,8,7,3,4,x,10000002,36\n"
    quoted = body.replace("x,10000002,36", '"x",10000002,36')
    fast, careful = _parse(body), _parse(quoted)
    assert _as_tuples(fast.rows) == _as_tuples(careful.rows)
    # The blank line is skipped by both and still counted.
    assert [fast.where(2), careful.where(2)] == ["line 5", "line 5"]
    assert fast.rows.date.dtype == careful.rows.date.dtype == np.dtype("datetime64[D]")


def test_esi_json_names_line_and_entry():
    text = (
        '[{"average":745052179.61,"date":"2017-12-01","highest":758999988.59,'
        '"lowest":710123189.93,"order_count":37,"volume":37},\n'
        ' {"average":1,"date":"2017-12-02","highest":1,"lowest":1,"order_count":1,"volume":1}]'
    )
    parsed = parse_esi_json(text, region=10000002, type_id=28606)
    assert _as_tuples(parsed.rows)[0] == (
        10000002,
        28606,
        "2017-12-01",
        745052179.61,
        758999988.59,
        710123189.93,
        37,
        37,
    )
    assert parsed.where(1) == "line 2, entry 2"
    bad = text.replace('"volume":1}', '"volume":-1}')
    with pytest.raises(PriceFileError, match="line 2: entry 2: volume -1 is not a whole number"):
        parse_esi_json(bad, region=10000002, type_id=28606)
    with pytest.raises(PriceFileError, match="line 1: entry 1: no average"):
        parse_esi_json('[{"date": "2017-12-01"}]', region=10000002, type_id=1)
    with pytest.raises(PriceFileError, match="line 1: entry 1: date 20171201 is not a date"):
        parse_esi_json(text.replace('"2017-12-01"', "20171201"), region=10000002, type_id=1)
    with pytest.raises(PriceFileError, match="entry 1: average true is not a number"):
        parse_esi_json(text.replace("745052179.61", "true"), region=10000002, type_id=1)


def test_an_esi_answer_skips_bad_days_and_keeps_the_last_of_a_repeated_date():
    day = {"average": 1.0, "highest": 1.0, "lowest": 1.0, "order_count": 1, "volume": 1}
    entries = [
        {**day, "date": "2025-01-01"},
        {**day, "date": "2025-01-02", "average": -1},
        {**day, "date": "2025-01-01", "average": 2.0},
        "not a day",
    ]
    rows, bad, future = esi_days(entries, region=10000002, type_id=34)
    assert (bad, future) == (2, 0)
    assert _as_tuples(rows) == [(10000002, 34, "2025-01-01", 2.0, 1.0, 1.0, 1, 1)]


def test_rows_from_python_tuples_are_checked_the_same_way():
    rows = rows_from_tuples([(10000002, 34, date(2025, 1, 1), 4.2, 4.3, 4.1, 100, 10)])
    assert _as_tuples(rows) == [(10000002, 34, "2025-01-01", 4.2, 4.3, 4.1, 100, 10)]
    with pytest.raises(PriceFileError, match="line 2: average -1 is not a price"):
        rows_from_tuples(
            [
                (10000002, 34, "2025-01-01", 1, 1, 1, 1, 1),
                (10000002, 34, "2025-01-02", -1, 1, 1, 1, 1),
            ]
        )
