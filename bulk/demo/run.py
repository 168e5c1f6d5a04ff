"""`demo`: the whole job end to end on a generated killboard in a database of its own."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import make_conninfo

from bulk import db
from bulk.audit import reference
from bulk.demo.load import load_demo_data
from bulk.engine import rules as rule_sets
from bulk.engine.scan import Selection
from bulk.engine.valuation import Valuation
from bulk.errors import UserError
from bulk.redact import mask_url
from bulk.run import RunJob, RunSummary, run_local

DEFAULT_DATADIR = Path(".bulk-backfill-demo") / "pgdata"
# Set on every database the demo creates; only a database bearing it is ever dropped.
DEMO_MARKER = "created by bulk-backfill demo"


@dataclass
class DemoResult:
    url: str
    embedded: bool
    items: int
    summary: RunSummary
    distribution: dict


def embedded_server_url(datadir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL of the pgserver package in datadir."""
    datadir.mkdir(parents=True, exist_ok=True)
    # pgserver warns about XDG_RUNTIME_DIR on import on servers; it is harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            raise UserError(
                "no DATABASE_URL is set and the embedded PostgreSQL is not installed: "
                "pip install 'bulk-backfill[demo]', or set DATABASE_URL"
            ) from None
        server = pgserver.get_server(datadir.resolve())
    return server.get_uri()


def fresh_database(server_url: str, name: str) -> str:
    """Drop (if the demo made it) and create the demo's own database; returns its URL.

    The fence before DROP DATABASE is the comment the demo sets on every database
    it creates: a name alone proves nothing (`--database killboard` must not drop
    a killboard), so any existing database without that comment is refused with
    one line and left alone. A name that does not exist yet is simply created.
    """
    with db.connect(server_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
        if row is not None:
            if row[0] != DEMO_MARKER:
                raise UserError(
                    f"refusing to drop database {name!r}: the demo did not create it "
                    f"(it lacks the comment {DEMO_MARKER!r}); choose another --database, "
                    "or drop it yourself if an older demo made it"
                )
            drop = sql.SQL("DROP DATABASE {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(name), sql.Literal(DEMO_MARKER)
            )
        )
    return make_conninfo(server_url, dbname=name)


def run_demo(
    *,
    killmails: int,
    procs: int,
    seed: int,
    database: str,
    server_url: str | None = None,
    datadir: Path = DEFAULT_DATADIR,
    progress: bool = True,
    rules: str = rule_sets.DEFAULT_RULES,
    say=print,
) -> DemoResult:
    embedded = server_url is None
    if embedded:
        say(f"No DATABASE_URL: starting an embedded PostgreSQL in {datadir}")
        server_url = embedded_server_url(datadir)
    url = fresh_database(server_url, database)
    say(f"Demo database: {mask_url(url)} (created anew)")
    with db.connect(url) as conn:
        db.init_db(conn)
        conn.commit()
        say(f"Generating {killmails:,} killmails (seed {seed})")
        # Market history (about 3 million rows) only where the rule set reads it.
        history = rule_sets.reads_history(rules)
        items = load_demo_data(conn, killmails, seed, progress=progress, history=history)
    say(
        f"Loaded {killmails:,} killmails with {items:,} item rows;"
        f" valuing them (mode null, rules {rules})"
    )
    job = RunJob(url, Selection(mode="null"), Valuation(rules=rules), procs=procs)
    summary = run_local(job, progress=progress)
    with db.connect(url, autocommit=True) as conn:
        distribution = reference.value_distribution(conn)
    return DemoResult(url, embedded, items, summary, distribution)


def server_url_from_env() -> str | None:
    return os.environ.get("DATABASE_URL") or None
