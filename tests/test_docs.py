"""Every command in README.md, docs/*.md and benchmarks/README.md runs as the docs show it.

How a doc is read (docs/development.md says the same for doc writers):

- Only fenced blocks without a language, or marked sh, shell, bash or console, hold
  commands. In a transcript (lines starting "$ ") every "$ " line is a command and the
  lines up to the next one are its output. In a plain block every line is a command.
- `<!-- docs-test: skip REASON -->` right before a block skips the whole block; SKIP
  below skips single commands by pattern. Each skip has a reason, printed by
  `pytest -rs`-style reporting through the test's output on failure.
- `<!-- docs-test: database empty -->` or `<!-- docs-test: database demo N -->` before
  a file's first block says what the file's commands start from (default: demo 3000,
  generated killmails with prices, none valued). Every file gets a database and a
  queue of its own; its commands run in the order the file gives them.
- `export DATABASE_URL=...` and `export RABBITMQ_URL=...` point at the test's own
  database and broker, whatever the doc writes (placeholders like USER@HOST); a
  `VAR=value` prefix on one command is kept as written (it is that example's point,
  e.g. a wrong password). BACKFILL_QUEUE is the file's own queue.
- The expected exit code is 0; or what `echo $?` prints right after the command; or
  non-zero when the command's output shows a `bulk-backfill: error:` line.
- Output check, robust to other numbers and timings: every shown line must be
  printed (stdout or stderr) whole, equal up to numbers (counts, times, IDs, a
  sample's digest; a list of IDs counts as one) and runs of spaces. Before
  comparing, the doc's database URL and queue name are read as the test's.
- `cat FILE` with output shown writes FILE with that content (the doc's input file);
  `psql "$DATABASE_URL" -c SQL` runs psql on the test database; `# ...` is a comment.
- `work` without `--until-empty` is a service: it runs until its queue is drained,
  then gets SIGINT, and its exit code is then the one checked.

`python -m tests.test_docs FILE` prints what each command of FILE prints here, to
paste fresh output into a doc.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from bulk.redact import mask_url
from tests import rabbit
from tests.conftest import (
    COMMAND,
    PROCESS_COMMANDS,
    REALDATA,
    cli_in_process,
    make_demo_db,
    new_database,
    skip_or_fail,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "README.md",
]
SHELL_LANGUAGES = {"", "sh", "shell", "bash", "console"}
DOC_QUEUE = "backfill_killmail_values_queue"
DOC_URL = "postgresql://postgres@127.0.0.1:5432/killboard"  # in outputs of docs without an export
LOCAL_BROKER = rabbit.RABBITMQ_URL

# Commands that cannot run in a test, by pattern, each with its reason.
SKIP = [
    (r"^bulk-backfill prices fetch --user-agent", "reaches ESI on the internet"),
    (
        r"^bulk-backfill prices fetch --esi-url",
        "needs the local ESI stand-in of tests/test_prices.py, which tests prices fetch",
    ),
    (
        r"^bulk-backfill demo$",
        "starts an embedded PostgreSQL (the demo extra); tests/test_cli.py runs demo",
    ),
]

_SETUP = re.compile(r"<!--\s*docs-test:\s*database\s+(empty|demo\s+(\d+))\s*-->")
_SKIP_BLOCK = re.compile(r"<!--\s*docs-test:\s*skip\b\s*(.*?)\s*-->")
_ASSIGN = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_NUMBER = re.compile(r"\d[\d,.]*")


@dataclass
class Command:
    where: str  # file:line, for messages
    index: int  # the line's index in the file
    line: str  # as written, without the "$ "
    output: list[str] = field(default_factory=list)
    skip: str | None = None
    exit_code: int | None = None  # from a following `echo $?`


@dataclass
class Doc:
    path: Path
    setup: tuple[str, int]
    commands: list[Command]


def parse(path: Path) -> Doc:
    lines = path.read_text().splitlines()
    rel = path.relative_to(ROOT)
    setup = ("demo", 3000)
    commands: list[Command] = []
    block_skip = None
    i = 0
    while i < len(lines):
        text = lines[i]
        if m := _SETUP.search(text):
            setup = ("demo", int(m.group(2))) if m.group(2) else ("empty", 0)
        if m := _SKIP_BLOCK.search(text):
            block_skip = m.group(1) or "skipped by the doc"
        fence = re.match(r"^(`{3,})\s*(\S*)", text)
        if not fence:
            if text.strip() and not text.lstrip().startswith("<!--"):
                block_skip = None  # a skip comment holds only for the block right after it
            i += 1
            continue
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))),
            len(lines),
        )
        if fence.group(2).lower() in SHELL_LANGUAGES:
            commands += _block(rel, i + 1, lines[i + 1 : end], block_skip)
        block_skip = None
        i = end + 1
    return Doc(path, setup, commands)


def _block(rel: Path, start: int, body: list[str], block_skip: str | None) -> list[Command]:
    transcript = any(line.startswith("$ ") for line in body)
    found: list[Command] = []
    for n, line in enumerate(body, start + 1):
        where = f"{rel}:{n}"
        if transcript and not line.startswith("$ "):
            if found:
                found[-1].output.append(line)
            continue
        line = line[2:] if transcript else line
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.strip() == "echo $?":
            found.append(Command(where, n - 1, line, skip="echo"))
            continue
        found.append(Command(where, n - 1, line.strip(), skip=block_skip))
    # `echo $?` and its output give the exit code of the command before it.
    out = []
    for cmd in found:
        if cmd.skip == "echo":
            if out and cmd.output:
                out[-1].exit_code = int(cmd.output[0].strip())
            continue
        out.append(cmd)
    for cmd in out:
        for pattern, reason in SKIP:
            if cmd.skip is None and re.search(pattern, cmd.line):
                cmd.skip = reason
    return out


_HEX = re.compile(r"\b[0-9a-f]{16}\b")  # a sample's digest
_LIST = re.compile(r"#(, #)+")  # a list of IDs, however long


def _normal(text: str) -> str:
    """A line as compared: numbers (counts, times, IDs) and digests are wildcards, a list
    of IDs one wildcard, spaces collapsed; every other character must be as shown."""
    text = _NUMBER.sub("#", _HEX.sub("#", text))
    return " ".join(_LIST.sub("#", text).split())


def _url(conninfo: str) -> str:
    """The test database as a URL, so the doc's URL in outputs can be read as it."""
    p = conninfo_to_dict(conninfo)
    user = p.get("user", "postgres")
    return f"postgresql://{user}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"


class Runner:
    def __init__(self, url: str, queue: str, cwd: Path):
        self.url = url
        self.queue = queue
        self.cwd = cwd
        self.doc_url = DOC_URL
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        self.env.update(DATABASE_URL=url, RABBITMQ_URL=LOCAL_BROKER, BACKFILL_QUEUE=queue)

    def run(self, cmd: Command) -> tuple[int, str, str] | None:
        """Runs one command; None for a line that only sets the environment."""
        words = shlex.split(cmd.line, comments=True)
        if any(w in ("&&", "||", "|", ";", ">", "<") for w in words):
            raise AssertionError(f"{cmd.where}: one command a line, please: {cmd.line}")
        if words[0] == "export":
            for word in words[1:]:
                name, _, value = word.partition("=")
                if name == "DATABASE_URL":
                    self.doc_url = value
                elif name != "RABBITMQ_URL":
                    self.env[name] = value
            return None
        env = dict(self.env)
        while words and _ASSIGN.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        words = [env.get(w.lstrip("$").strip("{}"), w) if w.startswith("$") else w for w in words]
        if words[0] == "cat" and cmd.output:
            (self.cwd / words[1]).write_text("\n".join(cmd.output) + "\n")
            return 0, "\n".join(cmd.output), ""
        if words[0] == "psql":
            proc = subprocess.run(words, capture_output=True, text=True, env=env, timeout=60)
            return proc.returncode, proc.stdout, proc.stderr
        if words[0] != "bulk-backfill":
            raise AssertionError(f"{cmd.where}: no rule runs or skips {cmd.line!r}")
        if any("realdata" in w for w in words) and not (REALDATA / "killmails.jsonl").exists():
            skip_or_fail(f"real data folder {REALDATA} is absent")
        argv = [*COMMAND, *words[1:]]
        if words[1:2] == ["work"] and "--until-empty" not in words:
            return self._service(argv, env)
        if words[1:2] and words[1] not in PROCESS_COMMANDS:
            done = cli_in_process(*words[1:], whole_env=env, cwd=self.cwd)
            return done.returncode, done.stdout, done.stderr
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=self.cwd, timeout=300
        )
        return proc.returncode, proc.stdout, proc.stderr

    def _service(self, argv: list[str], env: dict) -> tuple[int, str, str]:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.cwd
        )
        started = time.monotonic()
        deadline = started + 120
        time.sleep(1)
        while proc.poll() is None and time.monotonic() < deadline:
            # An empty queue ends the service, but not before it had 5 s to start: a
            # loaded machine can take seconds to reach the broker (and, in an error
            # example, to be refused by it).
            if rabbit.ready(env.get("BACKFILL_QUEUE", self.queue)) == 0:
                time.sleep(max(1.5, started + 5 - time.monotonic()))
                break
            time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return proc.returncode, out, err

    def check(self, cmd: Command, code: int, out: str, err: str) -> list[str]:
        problems = []
        shown = [self._as_test(line) for line in cmd.output]
        errors = [line for line in shown if line.startswith("bulk-backfill: error:")]
        want = cmd.exit_code if cmd.exit_code is not None else (1 if errors else 0)
        if (code == 0) != (want == 0) or (cmd.exit_code is not None and code != want):
            problems.append(f"exit code {code}, the doc shows {want}")
        # The doc's reader uses the default queue, which commands do not name.
        printed = (out + "\n" + err).replace(f" --queue {self.queue}", "").splitlines()
        normal = {_normal(line) for line in printed}
        for line in shown:
            if line.strip() and _normal(line) not in normal:
                what = "error line" if line in errors else "line"
                problems.append(f"missing {what} (equal up to numbers): {line}")
        return problems

    def _as_test(self, line: str) -> str:
        # Outputs show the doc's URL with its password masked, as the tool prints it.
        line = line.replace(mask_url(self.doc_url), _url(self.url))
        line = line.replace(self.doc_url, _url(self.url))
        return line.replace(DOC_QUEUE, self.queue)


def _setup_database(url: str, setup: tuple[str, int]) -> None:
    kind, killmails = setup
    if kind == "demo":
        make_demo_db(url, killmails)


def run_doc(
    doc: Doc, url: str, queue: str, cwd: Path, echo: bool = False, fresh: dict | None = None
) -> list[str]:
    """Runs a doc's commands in order; the problems found, one text per command."""
    runner = Runner(url, queue, cwd)
    failures = []
    for cmd in doc.commands:
        if cmd.skip:
            if echo:
                print(f"# {cmd.where} skipped ({cmd.skip}): {cmd.line}")
            continue
        result = runner.run(cmd)
        if result is None:
            continue
        code, out, err = result
        if echo:
            print(f"$ {cmd.line}\n{err}{out}# exit {code}", flush=True)
        if fresh is not None and cmd.output and not cmd.line.startswith("cat "):
            text = (err + out).rstrip("\n").replace(_url(url), mask_url(runner.doc_url))
            # The doc's reader uses the default queue, which work's hint does not name.
            text = text.replace(f" --queue {queue}", "").replace(queue, DOC_QUEUE)
            fresh[cmd.index] = (len(cmd.output), text.splitlines())
        problems = runner.check(cmd, code, out, err)
        if problems:
            failures.append(
                f"{cmd.where}: $ {cmd.line}\n  "
                + "\n  ".join(problems)
                + f"\n  --- stdout:\n{out}\n  --- stderr:\n{err}"
            )
    return failures


def _workdir(tmp: Path) -> Path:
    # The docs run from a checkout next to ../shared/realdata: the same layout here.
    cwd = tmp / "checkout"
    cwd.mkdir()
    (tmp / "shared").symlink_to(REALDATA.parent, target_is_directory=True)
    return cwd


# The documents whose whole run takes 15 s or more under the parallel suite: the
# fast tier leaves them to CI (make test runs them).
LONG_DOCS = {"docs/commands.md", "docs/operations.md", "docs/failure.md"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.slow) if str(p.relative_to(ROOT)) in LONG_DOCS else p
        for p in DOCS
    ],
    ids=[str(p.relative_to(ROOT)) for p in DOCS],
)
def test_documented_commands_work(path, queue_name, tmp_path):
    doc = parse(path)
    with new_database() as url:
        _setup_database(url, doc.setup)
        failures = run_doc(doc, _url(url), queue_name, _workdir(tmp_path))
    assert not failures, "\n\n".join(failures)


def test_every_doc_command_is_run_or_skipped_with_a_reason():
    """The parser finds the commands (a rule change cannot silently drop them all)."""
    found = {p.name: parse(p).commands for p in DOCS}
    assert sum(1 for cmds in found.values() for c in cmds if not c.skip) >= 20, found
    for cmds in found.values():
        for cmd in cmds:
            assert cmd.skip is None or cmd.skip.strip(), cmd


if __name__ == "__main__":
    import tempfile

    # python -m tests.test_docs FILE [--write]: --write pastes the fresh outputs into FILE.
    doc = parse(Path(sys.argv[1]).resolve())
    queue = rabbit.new_queue_name()
    fresh: dict = {}
    with tempfile.TemporaryDirectory() as tmp, new_database() as url:
        _setup_database(url, doc.setup)
        try:
            for failure in run_doc(doc, _url(url), queue, _workdir(Path(tmp)), True, fresh):
                print("FAILED", failure, file=sys.stderr)
        finally:
            rabbit.delete_queues(queue)
    if "--write" in sys.argv:
        lines = doc.path.read_text().splitlines()
        for index in sorted(fresh, reverse=True):
            count, new = fresh[index]
            lines[index + 1 : index + 1 + count] = new
        doc.path.write_text("\n".join(lines) + "\n")


def test_the_readme_stays_short():
    """The README is the front door: 150 lines at most; the rest lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
