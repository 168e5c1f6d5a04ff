"""The package's floors (docs/development.md, "Layers"): every import, those inside
functions included, runs to the importer's floor or a lower one, and no imports go
round in a circle. Read from the source with ast, so nothing is imported here."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bulk"
DOC = ROOT / "docs" / "development.md"


def floors() -> list[tuple[int, str, list[str]]]:
    """(number, name, module patterns) of each floor, lowest first, as the doc lists them."""
    text = DOC.read_text()
    block = re.search(r"<!-- layers -->\s*```text\n(.*?)```", text, re.S)
    assert block, "docs/development.md has no layers block"
    found: list[tuple[int, str, list[str]]] = []
    for line in block.group(1).splitlines():
        if m := re.match(r"^(\d+)\s+(\S+)\s+(.*)$", line):
            found.append((int(m.group(1)), m.group(2), m.group(3).split()))
        elif line.strip():
            found[-1][2].extend(line.split())
    return found


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports: `from a.b import c` is a.b.c where that
    is a module, else a.b; relative imports are resolved against the package."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bulk"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "bulk":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found - {name}


def floor_of(name: str, table) -> int:
    for number, _, patterns in table:
        if any(fnmatch(name, p) if p.endswith(".*") else name == p for p in patterns):
            return number
    raise AssertionError(f"{name} is on no floor of docs/development.md's layers")


def test_every_module_is_on_one_floor():
    table = floors()
    assert [n for n, _, _ in table] == list(range(1, len(table) + 1))
    for name in modules():
        hits = [
            n
            for n, _, ps in table
            for p in ps
            if (fnmatch(name, p) if p.endswith(".*") else name == p)
        ]
        assert len(hits) == 1, f"{name} is on floors {hits}"


def test_no_import_runs_up_a_floor():
    table = floors()
    known = modules()
    upward = []
    for name, path in sorted(known.items()):
        mine = floor_of(name, table)
        for target in sorted(imports_of(name, path, set(known))):
            if target in known and floor_of(target, table) > mine:
                upward.append(
                    f"{name} (floor {mine}) imports {target} (floor {floor_of(target, table)})"
                )
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    known = modules()
    graph = {n: imports_of(n, p, set(known)) & set(known) for n, p in known.items()}
    # A package imports nothing of its own modules here, so a package and its
    # module are no cycle unless the module imports the package back.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_walk_sees_an_import_inside_a_function(tmp_path):
    """The walk itself: an import hidden in a function body counts."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from bulk.cli import render\n    return render\n")
    assert imports_of("bulk.db", source, {"bulk.cli.render"}) == {"bulk.cli.render"}


def test_run_imports_no_broker_metrics_or_numpy_in_its_parent():
    """`run`'s parent hands out batches: pika, prometheus_client and tqdm (a bar on a
    terminal only) are not its to import, and numpy is its children's, which import
    it while the parent checks and searches (bulk.run._child). Each cost every run
    20-70 ms of start-up."""
    code = (
        "import sys, bulk.entry, bulk.cli.jobs, bulk.run; "
        "print(sorted(m for m in ('pika', 'prometheus_client', 'numpy', 'tqdm')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
