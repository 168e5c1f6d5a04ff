"""Loading ../shared/realdata (see its SOURCES.md) for tests; nothing is copied into the project."""

from __future__ import annotations

import csv
import json

import psycopg
import pytest

from tests.conftest import REALDATA

# Skipped where the folder is absent, but failed under CI=true (the realdata_present
# fixture in conftest.py): CI must never pass without the real data.
needs_realdata = pytest.mark.usefixtures("realdata_present")


def read_prices() -> dict[int, float]:
    """type_id -> average_price, for entries that have one."""
    entries = json.loads((REALDATA / "prices.json").read_text())
    return {e["type_id"]: e["average_price"] for e in entries if "average_price" in e}


def read_types() -> list[dict]:
    with open(REALDATA / "types.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def load_prices_and_types(url: str) -> None:
    """average_price as the sell (and average) price; types.csv for groups and categories."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY market_prices (type_id, sell, average, updated_at) FROM STDIN") as cp:
            for type_id, price in read_prices().items():
                cp.write_row((type_id, price, price, "2025-05-15"))
    load_types(url)


def load_types(url: str) -> None:
    """types.csv into types, item_groups and categories."""
    types = read_types()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        categories = {(int(t["category_id"]), t["category_name"]) for t in types}
        groups = {(int(t["group_id"]), int(t["category_id"])) for t in types}
        with cur.copy("COPY categories (id, name) FROM STDIN") as cp:
            for row in sorted(categories):
                cp.write_row(row)
        with cur.copy("COPY item_groups (id, name, category_id) FROM STDIN") as cp:
            for gid, cid in sorted(groups):
                cp.write_row((gid, f"group {gid}", cid))
        with cur.copy("COPY types (id, name, group_id) FROM STDIN") as cp:
            for t in types:
                cp.write_row((int(t["type_id"]), f"type {t['type_id']}", int(t["group_id"])))


def read_killmails() -> list[dict]:
    lines = (REALDATA / "killmails.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]
