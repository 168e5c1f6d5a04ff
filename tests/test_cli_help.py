"""Every CLI command documents itself: help on each option, an Example block kept as written."""

import click
import pytest
from click.testing import CliRunner

from bulk.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    yield prefix, group
    for name, command in group.commands.items():
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
