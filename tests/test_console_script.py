"""One smoke test per command through the installed console script.

Most tests run commands in-process (tests/conftest.py cli()); these run the real
bulk-backfill process, so its entry point, its lazy command loading and its exit
codes are checked as a shell sees them. run, work and demo always run as the
script elsewhere (tests/test_run.py, tests/test_queue_work.py, tests/test_cli.py).
"""

from __future__ import annotations

import psycopg
import pytest

from tests import rabbit
from tests.conftest import cli
from tests.test_history import _day_rows, _everef

_ENV = {"RABBITMQ_URL": rabbit.RABBITMQ_URL}


def script(*args: str, url: str | None = None, env: dict | None = None):
    return cli(*args, url=url, env=env, process=True)


def _ok(out, *shown: str) -> None:
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    printed = out.stdout + out.stderr
    for text in shown:
        assert text in printed, printed


def _error(out, code: int, text: str) -> None:
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulk-backfill: error:"), out.stderr
    assert text in lines[0], lines[0]


@pytest.mark.slow
def test_every_command_through_the_console_script(fresh_db, queue_name, tmp_path):
    url = fresh_db
    _ok(script("--version"), "bulk-backfill")
    _ok(script("--help"), "Commands:", "import-killmails")
    _error(script("no-such-command"), 2, "No such command")
    _error(script("status", "--bogus"), 2, "No such option")
    _error(script("init-db"), 2, "DATABASE_URL")

    _ok(script("init-db", url=url), "killmails")
    _ok(script("demo-data", "--killmails", "200", "--no-history", url=url))
    _error(script("import-killmails", str(tmp_path / "none.jsonl"), url=url), 2, "none.jsonl")

    prices = tmp_path / "prices.csv"
    prices.write_text("type_id,sell\n34,4.5\n")
    _ok(script("prices", "import", str(prices), url=url))
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT sell FROM market_prices WHERE type_id = 34").fetchone() == (
            4.5,
        )
    _ok(script("prices", "fetch", "--help"), "Example:")
    history = _everef(tmp_path / "market-history-2025-01-01.csv", _day_rows("2025-01-01", [34]))
    _ok(script("prices", "history", "import", str(history), url=url))
    _ok(script("prices", "history", "fetch", "--help"), "Example:")
    _ok(script("prices", "override", "set", "--type-id", "34", "--price", "7", url=url))
    _ok(script("prices", "override", "list", url=url), "34")
    overrides = tmp_path / "overrides.csv"
    overrides.write_text("type_id,price\n35,8\n")
    _ok(script("prices", "override", "import", str(overrides), url=url))

    _ok(script("status", "--no-queue", url=url), "killmails")
    _ok(script("verify", url=url), "mismatches")
    _ok(script("queue", "--queue", queue_name, url=url, env=_ENV), "queued")
    assert rabbit.ready(queue_name) > 0
    _ok(script("dead", "list", "--queue", queue_name, env=_ENV))
    _ok(script("dead", "requeue", "--queue", queue_name, env=_ENV))


def test_ctrl_c_while_the_cli_imports_is_one_line(tmp_path):
    """Ctrl+C in the console script's first 0.1-0.2 s lands in the CLI's imports
    (click, psycopg): one line and exit 130, as later, never a traceback. A click
    that raises KeyboardInterrupt on import stands in for the keypress."""
    (tmp_path / "click").mkdir()
    (tmp_path / "click" / "__init__.py").write_text("raise KeyboardInterrupt\n")
    out = cli("--help", env={"PYTHONPATH": str(tmp_path)}, process=True)
    assert (out.returncode, out.stderr) == (130, "bulk-backfill: interrupted\n")
