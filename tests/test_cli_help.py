"""Every CLI command documents itself: help on each option, an Example block kept as written."""

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from bulk.cli import cli
from bulk.cli.lazy import LazyGroup, load


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = list(_commands(cli))


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "cli" for p, _ in COMMANDS])
def test_every_option_has_help_text(path, command):
    missing = [
        p.opts[0]
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert not missing, f"{' '.join(path) or 'cli'}: options without help: {missing}"


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "cli" for p, _ in COMMANDS])
def test_every_docstring_ends_with_an_example_that_help_prints_unwrapped(path, command):
    doc = (command.help or "").rstrip()
    lines = doc.splitlines()
    marker = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    assert marker, f"{path}: no 'Example:' line"
    assert lines[marker[-1] - 1].strip() == "\b", f"{path}: no \\b before the Example block"
    example = [line.strip() for line in lines[marker[-1] + 1 :] if line.strip()]
    assert example and all(e.startswith(("bulk-backfill", "DATABASE_URL=")) for e in example)
    out = CliRunner().invoke(cli, [*path, "--help"], terminal_width=60).output
    for line in example:
        assert line in out, f"{path}: example rewrapped or missing in --help:\n{out}"


LAZY = [
    (path, name, target, text)
    for path, group in COMMANDS
    if isinstance(group, LazyGroup)
    for name, (target, text) in group.lazy.items()
]


@pytest.mark.parametrize(
    "path,name,target,text", LAZY, ids=[" ".join((*p, n)) for p, n, _, _ in LAZY]
)
def test_a_lazy_command_is_listed_with_its_own_first_line(path, name, target, text):
    command = load(target)
    assert command.name == name
    assert text == command.help.split("\n\n")[0].strip(), f"{name}: help line drifted"


def test_help_imports_no_command_module():
    # --help lists every command from the registry; importing their modules would cost
    # every start-up the whole library.
    code = (
        "import sys; from bulk.cli import invoke; invoke(['--help']); invoke(['prices', '-h']);"
        " sys.stderr.write(' '.join(m for m in sys.modules if m.startswith('bulk.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded = set(out.stderr.split())
    assert "Commands:" in out.stdout and "override" in out.stdout
    assert not loaded & {
        "bulk.cli.jobs",
        "bulk.cli.prices",
        "bulk.cli.history",
        "bulk.engine.batch",
    }
