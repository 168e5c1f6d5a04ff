"""Price files and order books (pure functions): what is read, and why a row is refused."""

import pytest

from bulk.prices.files import PriceFileError, parse_csv, parse_esi_json
from bulk.prices.market import MarketPrice, read_book


def test_order_book_definitions():
    orders = [
        {"is_buy_order": True, "price": 10.0, "volume_remain": 5},
        {"is_buy_order": True, "price": 12.5, "volume_remain": 1},
        {"is_buy_order": False, "price": 14.0, "volume_remain": 2},
        {"is_buy_order": False, "price": 13.0, "volume_remain": 3},
    ]
    assert read_book(7, orders)[0] == MarketPrice(7, 12.5, 13.0, 12.75, 11.0)
    assert read_book(7, orders[:2])[0] == MarketPrice(7, 12.5, 0.0, 6.25, 6.0)
    assert read_book(7, orders[2:])[0] == MarketPrice(7, 0.0, 13.0, 6.5, 5.0)
    assert read_book(7, [])[0] is None


def test_esi_json_keeps_line_numbers_and_maps_fields():
    text = (
        '[\n {"type_id": 34, "average_price": 4.5, "adjusted_price": 4.4},\n {"type_id": 35},\n'
        ' {"type_id": 36, "adjusted_price": 1}\n]'
    )
    table = parse_esi_json(text, {"average_price": "sell", "adjusted_price": "average"})
    assert table.columns == ("sell", "average")
    # An entry without a mapped field is skipped and counted, never a row of NULLs.
    assert table.rows == [(34, 4.5, 4.4)]
    assert (table.skipped, table.needed) == (2, ("average_price", "adjusted_price"))
    table = parse_esi_json(text, {"adjusted_price": "sell"})
    assert (table.rows, table.skipped) == ([(34, 4.4), (36, 1.0)], 1)
    with pytest.raises(PriceFileError, match="line 2: type_id 34 again"):
        repeated = '[{"type_id": 34},\n{"type_id": 34, "average_price": 1}]'
        parse_esi_json(repeated, {"average_price": "sell"})
    with pytest.raises(PriceFileError, match="line 3: type_id 34 again"):
        parse_esi_json('[{"type_id": 34},\n\n{"type_id": 34}]', {"average_price": "sell"})
    with pytest.raises(PriceFileError, match="line 2: not JSON"):
        parse_esi_json('[{"type_id": 34},\n{"type_id": }]', {"average_price": "sell"})
    with pytest.raises(PriceFileError, match="line 1: expected a JSON list"):
        parse_esi_json('{"type_id": 34}', {"average_price": "sell"})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "line 1: empty file"),
        ("id,sell\n1,2\n", "line 1: the header has no type_id"),
        ("type_id,price\n1,2\n", "line 1: unknown column 'price'"),
        ("type_id\n1\n", "line 1: no price column"),
        ("type_id,sell\n1,2\nx,3\n", "line 3: type_id 'x'"),
        ("type_id,sell\n1,2\n2,-1\n", "line 3: sell '-1' is not a price"),
        ("type_id,sell\n1,2\n2,nan\n", "line 3: sell 'nan' is not a price"),
        ("type_id,sell\n1,2\n2,3,4\n", "line 3: 3 cells"),
        ("type_id,sell\n0,2\n", "line 2: type_id 0"),
    ],
)
def test_csv_rows_are_refused_with_their_line(text, error):
    with pytest.raises(PriceFileError, match=error):
        parse_csv(text)


def test_csv_reads_any_price_columns():
    table = parse_csv("volume,type_id,buy\n10,34,4.1\n\n,35,\n")
    assert table.columns == ("buy", "volume")
    assert table.rows == [(34, 4.1, 10.0), (35, None, None)]
