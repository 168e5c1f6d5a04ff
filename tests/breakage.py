"""Break the code on purpose, run one rewritten test, expect it to fail; restore.

The check behind issue 23: tests moved in-process, onto template databases, onto
less data or off the second schema must still fail when the code they guard is
wrong. Each case edits one file, runs one test, and puts the file back.

    .venv/bin/python -m tests.breakage
"""

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = [
    (
        "sql/status_killmails.sql",
        "count(*) FILTER (WHERE k.total_value = 0)         AS zero_value",
        "count(*) FILTER (WHERE k.total_value >= 0)        AS zero_value",
        "tests/test_status_verify.py::test_status_counts_equal_sql_counts",
    ),
    # Masking has two layers (mask_url where a URL is shown, scrub of every error line):
    # the test fails only when both are broken, so both are.
    (
        "bulk/redact.py",
        "    text = _URL_USERINFO.sub(_mask_userinfo, text)\n",
        "    return text\n",
        "tests/test_masking.py::test_no_command_shows_a_database_password",
        (
            "    if _KEYWORD_STRING.match(url):\n        return _KEYWORD_PASSWORD.sub",
            "    return url\n    if _KEYWORD_STRING.match(url):\n"
            "        return _KEYWORD_PASSWORD.sub",
        ),
    ),
    (
        "bulk/prices/files.py",
        'if name != "volume" and number > MAX_PRICE:',
        'if name != "volume" and number > MAX_PRICE * 1e300:',
        "tests/test_price_validation.py::test_import_refuses_absurd_csv_prices_with_the_line",
    ),
    (
        "bulk/prices/files.py",
        'super().__init__(f"line {line}: {reason}")',
        'super().__init__(f"line {line + 1}: {reason}")',
        "tests/test_prices.py::test_import_with_a_bad_row_writes_nothing_and_names_the_line",
    ),
    # The capsule's 10 ISK is seed's data in the rules module since the price book.
    (
        "bulk/engine/rules.py",
        'ShapePrice("capsule hull", SHIP, "type", (670,), Decimal("10"))',
        'ShapePrice("capsule hull", SHIP, "type", (670,), Decimal("10.01"))',
        "tests/test_run.py::test_run_values_every_killmail_of_a_demo_in_many_batches",
    ),
    # Issue 26's session: a history rewrite of 15 days instead of 40, and the
    # order the book's rows are written in.
    (
        "bulk/engine/book.py",
        '    earliest day of it that changed. Each rule set says how far a change reaches."""\n',
        '    earliest day of it that changed. Each rule set says how far a change reaches."""\n'
        "    return 0\n",
        "tests/engine/test_book.py::test_a_history_import_makes_the_rows_it_reaches_stale",
    ),
    (
        "sql/book_store.sql",
        "    ORDER BY n.price_date, n.type_id\n",
        "\n",
        "tests/engine/test_book.py::test_a_jobs_rows_are_written_in_the_order_batches_read_them",
    ),
    (
        "bulk/cli/render.py",
        'f"checked     {report.checked:>12,}',
        'f"checkd      {report.checked:>12,}',
        "tests/test_docs.py::test_documented_commands_work[docs/operations.md]",
    ),
    (
        "bulk/importer.py",
        'raise UserError(f"{path}:{number}: {exc}; nothing was imported")',
        'raise UserError(f"{path}:{number + 1}: {exc}; nothing was imported")',
        "tests/test_bad_input.py::test_import_killmails_refuses_hostile_lines_with_the_line_number",
    ),
    (
        "bulk/queue/publish.py",
        "link = None if dry_run else _Link(amqp_url, queue, broker_patience)",
        "link = _Link(amqp_url, queue, broker_patience)",
        "tests/test_queue_work.py::test_dry_run_publishes_nothing",
    ),
    (
        "bulk/cli/setup.py",
        "Create the killboard tables that are missing. Never drops or alters existing data.",
        "Create the killboard tables that are missing. Never drops existing data.",
        "tests/test_cli_help.py",
    ),
    (
        "bulk/cli/__init__.py",
        "        return exc.exit_code\n    except (click.exceptions.Abort",
        "        return 0\n    except (click.exceptions.Abort",
        "tests/test_console_script.py",
    ),
    (
        "bulk/importer.py",
        "        doc = jsontext.loads(text)",
        "        doc = json.loads(text)",
        "tests/test_jsontext.py",
    ),
    # Issue 27: valuation stamps and the stale mode.
    (
        "sql/value_book.sql",
        "SET book = {book}, version = (SELECT bv.version FROM book_version AS bv),",
        "SET book = {book}, version = 0,",
        "tests/test_stamps.py::test_stale_rewrites_exactly_the_killmails_whose_prices_changed[tool-sql]",
    ),
    (
        "sql/update_batch.sql",
        "    WHERE w.killmail_id NOT IN (SELECT r.killmail_id FROM restamped AS r)",
        "    WHERE false",
        "tests/test_stamps.py::test_every_write_stamps_its_killmails_with_the_book[tool-numpy]",
    ),
    (
        "sql/stale_moved.sql",
        "        ORDER BY o.version\n",
        "        ORDER BY o.version DESC\n",
        "tests/test_stamps.py::test_small_moves_add_up_against_the_stamp",
    ),
    (
        "bulk/engine/modes.py",
        '" AND vs.version >= coalesce(',
        '" AND vs.version > coalesce(',
        "tests/test_stamps.py::test_the_guard_skips_a_killmail_revalued_since",
    ),
    # The numpy engine loads a stale batch whole: its UPDATE alone guards the mode.
    (
        "sql/update_batch.sql",
        "      AND {mode_predicate}\n",
        "",
        "tests/test_stamps.py::test_the_guard_skips_a_killmail_revalued_since[tool]",
    ),
    # The stale search without the killmail row (sql/stale_ids.sql, bulk/engine/stale.py).
    (
        "sql/stale_ids.sql",
        "SELECT DISTINCT ON (f.killmail_id) f.killmail_id, f.reason",
        "SELECT f.killmail_id, f.reason",
        "tests/test_stamps.py::test_a_killmail_both_unvalued_and_of_moved_prices_is_found_once[tool]",
    ),
    # The search's two halves at once (run, queue): one killmail found by both, once.
    (
        "bulk/engine/stale.py",
        "        if killmail_id != last:",
        "        if True:",
        "tests/test_stamps.py::test_the_search_apart_finds_what_the_one_statement_finds[tool]",
    ),
    (
        "bulk/engine/stale.py",
        '_HELD_ALONE = "h.killmail_id > %(after)s"',
        '_HELD_ALONE = "TRUE"',
        "tests/test_stamps.py::test_stale_resumes_after_an_id[tool]",
    ),
    (
        "bulk/engine/stale.py",
        "WHERE k.killmail_id = h.killmail_id OFFSET 0)",
        "WHERE true OFFSET 0)",
        "tests/test_stamps.py::test_a_killmail_deleted_without_its_lines_is_never_found_stale[tool-none]",
    ),
    # The probe is left out only under validated keys with their triggers on.
    (
        "sql/lines_keep_their_killmails.sql",
        "  AND c.convalidated\n",
        "",
        "tests/test_stamps.py::test_a_killmail_deleted_without_its_lines_is_never_found_stale[tool-not-validated]",
    ),
]
results = []
for path, old, new, test, *more in CASES:
    f = ROOT / path
    text = f.read_text()
    broken = text
    for o, n in [(old, new), *more]:
        assert broken.count(o) == 1, (path, o)
        broken = broken.replace(o, n)
    f.write_text(broken)
    try:
        out = subprocess.run(
            [
                str(ROOT / ".venv/bin/python"),
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                test,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "CI": "true"},
        )
    finally:
        f.write_text(text)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-200:]
    results.append((test, path, out.returncode, last))
    print(
        "FAILS (good)" if out.returncode == 1 else "DID NOT FAIL",
        f"rc={out.returncode}  {test}  [{path}]  {last}",
        flush=True,
    )
