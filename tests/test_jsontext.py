"""Outside JSON nested too deep is refused the same way whatever the process's recursion limit.

A worker raises the limit for pika (bulk.queue.broker); tests now run commands
in-process after such a worker test, which is how a too-deep killmail line was
found to import as 'not a JSON object' instead of 'nested too deep'.
"""

import sys

import pytest

from bulk import importer
from bulk.prices import files

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def high_recursion_limit():
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(before)


def test_a_killmail_line_nested_too_deep_is_refused_under_a_high_limit(high_recursion_limit):
    with pytest.raises(ValueError, match="nested too deep"):
        importer.parse_killmail(DEEP)
    assert sys.getrecursionlimit() == 100_000  # the process's own limit comes back


def test_a_price_file_entry_nested_too_deep_is_refused_under_a_high_limit(high_recursion_limit):
    with pytest.raises(files.PriceFileError, match="nested too deep"):
        list(files.json_entries("[" + DEEP + "]"))
