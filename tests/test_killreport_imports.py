"""import-killmails and demo-data on killreport's schema (issue 13, point 3).

killreport has NOT NULL columns the tool's own schema lacks (the zKillboard
hash, the system, the victim's corporation and damage, updated_at with no
default) and keeps only top-level items. The tool's schema is covered by
tests/test_import.py and the demo tests.
"""

import json
import re

import psycopg
import pytest

from tests.conftest import cli, mismatches


def _lines(realdata):
    return (realdata / "killmails.jsonl").read_text().splitlines()


def _zkb_hashes(realdata) -> dict[int, str]:
    return {
        doc["killmail_id"]: doc["zkb"]["hash"]
        for doc in map(json.loads, (realdata / "zkb.jsonl").read_text().splitlines())
    }


def _expected_hash(doc: dict, zkb: dict[int, str]) -> str | None:
    return (
        (doc.get("zkb") or {}).get("hash")
        or doc.get("killmail_hash")
        or zkb.get(doc["killmail_id"])
    )


def _hashed_file(realdata, tmp_path):
    """The real killmails that have a hash somewhere (inline, beside, or in zkb.jsonl).

    One line (128637593, from zk-activity's tests) came without any zkb block,
    so killreport cannot take it; it is covered by the refusal test."""
    zkb = _zkb_hashes(realdata)
    kept = [line for line in _lines(realdata) if _expected_hash(json.loads(line), zkb)]
    assert len(kept) == len(_lines(realdata)) - 1
    path = tmp_path / "killmails.jsonl"
    path.write_text("\n".join(kept) + "\n")
    return path, [json.loads(line) for line in kept], zkb


def _key(row):
    return tuple(-1 if v is None else v for v in row)


def _flatten(items, top_level_only):
    for item in items or []:
        yield item
        if not top_level_only:
            yield from _flatten(item.get("items"), top_level_only)


def _expected_items(docs, top_level_only):
    return sorted(
        (
            (
                doc["killmail_id"],
                item["item_type_id"],
                item["flag"],
                item.get("quantity_destroyed"),
                item.get("quantity_dropped"),
                item["singleton"],
            )
            for doc in docs
            for item in _flatten(doc["victim"].get("items"), top_level_only)
        ),
        key=_key,
    )


def _stored_items(url):
    with psycopg.connect(url) as conn:
        return sorted(
            conn.execute(
                "SELECT killmail_id, item_type_id, flag, quantity_destroyed, quantity_dropped,"
                " singleton FROM killmail_items"
            ).fetchall(),
            key=_key,
        )


def _counts(url):
    with psycopg.connect(url) as conn:
        return [
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("killmails", "victims", "killmail_items")
        ]


def test_real_killmails_fill_every_not_null_column_on_killreport(
    killreport_db, realdata_present, tmp_path
):
    path, docs, zkb = _hashed_file(realdata_present, tmp_path)
    done = cli(
        "import-killmails",
        str(path),
        "--zkb",
        str(realdata_present / "zkb.jsonl"),
        url=killreport_db,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(killreport_db) as conn:
        killmails = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT killmail_id, killmail_hash, solar_system_id,"
                " updated_at > (now() AT TIME ZONE 'UTC') - interval '10 minutes'"
                " FROM killmails"
            )
        }
        victims = {
            r[0]: r[1:]
            for r in conn.execute("SELECT killmail_id, corporation_id, damage_taken FROM victims")
        }
    assert killmails == {
        d["killmail_id"]: (_expected_hash(d, zkb), d["solar_system_id"], True) for d in docs
    }
    assert victims == {
        d["killmail_id"]: (d["victim"]["corporation_id"], d["victim"]["damage_taken"]) for d in docs
    }
    # Without --top-level-only every item is kept, with its flag.
    assert _stored_items(killreport_db) == _expected_items(docs, top_level_only=False)


def test_top_level_only_stores_no_contained_items(killreport_db, realdata_present, tmp_path):
    path, docs, _ = _hashed_file(realdata_present, tmp_path)
    done = cli(
        "import-killmails",
        str(path),
        "--zkb",
        str(realdata_present / "zkb.jsonl"),
        "--top-level-only",
        url=killreport_db,
    )
    assert done.returncode == 0, done.stderr
    expected = _expected_items(docs, top_level_only=True)
    # The real set has containers with contents (49460219 alone holds 277 rows).
    assert len(expected) < len(_expected_items(docs, top_level_only=False))
    assert _stored_items(killreport_db) == expected
    assert "inside containers" in done.stdout


def test_line_without_zkb_hash_is_refused_naming_the_column(
    killreport_db, realdata_present, tmp_path
):
    docs = [json.loads(line) for line in _lines(realdata_present) if '"zkb"' in line][:3]
    del docs[2]["zkb"]
    path = tmp_path / "kills.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    done = cli("import-killmails", str(path), url=killreport_db)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "killmails.killmail_hash" in lines[0] and "line 3" in lines[0]
    assert "zkb.hash" in lines[0] and "nothing was imported" in lines[0]
    assert "violates" not in lines[0] and "Traceback" not in done.stderr
    assert _counts(killreport_db) == [0, 0, 0]


@pytest.mark.parametrize("command", ["import-killmails", "demo-data"])
def test_unknown_not_null_column_is_refused_before_writing(
    killreport_db, realdata_present, tmp_path, command
):
    with psycopg.connect(killreport_db) as conn:
        conn.execute("ALTER TABLE victims ADD COLUMN security_status real NOT NULL")
    if command == "import-killmails":
        path, _, _ = _hashed_file(realdata_present, tmp_path)
        args = ["import-killmails", str(path), "--zkb", str(realdata_present / "zkb.jsonl")]
    else:
        args = ["demo-data", "--killmails", "100"]
    done = cli(*args, url=killreport_db)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "victims.security_status" in lines[0], done.stderr
    assert "violates" not in lines[0]
    assert _counts(killreport_db) == [0, 0, 0]


def test_demo_data_on_killreport_fills_the_columns_and_values_with_no_mismatch(killreport_db):
    done = cli("demo-data", "--killmails", "2000", url=killreport_db)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(killreport_db) as conn:
        hashes = [r[0] for r in conn.execute("SELECT killmail_hash FROM killmails")]
        (systems,) = conn.execute(
            "SELECT count(*) FROM killmails WHERE solar_system_id BETWEEN 30000001 AND 30005000"
        ).fetchone()
        (victims, damaged) = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE damage_taken > 0 AND corporation_id > 0)"
            " FROM victims"
        ).fetchone()
        (stale,) = conn.execute(
            "SELECT count(*) FROM types"
            " WHERE updated_at < (now() AT TIME ZONE 'UTC') - interval '10 minutes'"
        ).fetchone()
    assert len(hashes) == 2000 and len(set(hashes)) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{40}", h) for h in hashes)
    assert systems == 2000
    assert victims > 1900 and damaged == victims
    assert stale == 0
    done = cli("run", "--mode", "null", url=killreport_db)
    assert done.returncode == 0, done.stderr
    assert mismatches(killreport_db) == []
