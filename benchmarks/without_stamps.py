"""An install of this tree's HEAD that writes values without their stamps: the
reference for what stamping alone costs (issue 27's first target).

    python -m benchmarks.without_stamps /tmp/nostamp
    python -m benchmarks.ab --old /tmp/nostamp/.venv/bin/bulk-backfill --rounds 8

The install before stamps (fa4fbf3, benchmarks.stamps' `--old`) also lacks every
later change, some of which made `run` faster; this one differs from HEAD only
in its two write statements (sql/value_book.sql, sql/update_batch.sql), whose
stamp CTEs (`restamped`, `stamped`) are cut. Never a tree to run jobs with:
its values have no stamps, so every one is stale.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITES = ("sql/value_book.sql", "sql/update_batch.sql")


def cut_stamps(text: str) -> str:
    """The statement with its CTEs from `restamped` to the final SELECT removed."""
    start = text.index("\nrestamped AS (")
    end = text.index("\nSELECT ", start)
    lines = text[:start].split("\n")
    while lines[-1].lstrip().startswith("--"):  # restamped's own comment goes with it
        lines.pop()
    head = "\n".join(lines).rstrip()
    # The CTE before restamped ends with "),": its comma went with the cut CTEs.
    if not head.endswith(","):
        raise ValueError("the CTE before restamped does not end with a comma")
    return head[:-1] + text[end:]


def build(dest: Path) -> Path:
    if dest.exists():
        raise SystemExit(f"{dest} exists: give a new folder")
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for name in WRITES:
        path = dest / name
        path.write_text(cut_stamps(path.read_text()))
    subprocess.run([sys.executable, "-m", "venv", str(dest / ".venv")], check=True)
    subprocess.run([str(dest / ".venv/bin/pip"), "install", "-q", str(dest)], check=True)
    return dest / ".venv/bin/bulk-backfill"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="a new folder for the copy and its venv")
    args = parser.parse_args(argv)
    print(build(args.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
