"""The measurements: baseline, ceiling, run, queue + work, RSS and scaling, all on the same data.

Every measurement starts from the same state (every value NULL, the table
vacuumed) and ends with a check that every value it wrote equals the SQL
reference: a fast wrong result fails the suite.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import baseline, ceiling
from benchmarks.command import run_command
from bulk import db
from bulk.demo.load import load_demo_data
from bulk.engine import statements
from bulk.engine.modes import ENGINES
from bulk.queue import broker

SEED = 1


@dataclass
class Measurement:
    name: str  # e.g. "run", "work", "ceiling-chunked", "baseline"
    procs: int
    batch_size: int | None
    killmails: int  # in the database measured
    written: int
    seconds: float
    rate: float  # killmails written per second
    verified: bool
    round: int = 0
    peak_rss_mb: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def verified_run(cls, name, procs, batch, n, written, seconds, rnd, rss=None, extra=None):
        """A measurement whose values were checked against the reference."""
        return cls(
            name, procs, batch, n, written, seconds, written / seconds, True, rnd, rss, extra or {}
        )


@dataclass
class SuiteConfig:
    server_url: str
    killmails: int
    rounds: int
    baseline_sample: int
    rabbitmq_url: str
    say: Callable[[str], None] = print


class VerificationFailed(AssertionError):
    pass


def reusable(
    server_url: str, name: str, killmails: int, ready: Callable[[psycopg.Connection], bool]
) -> bool:
    """Whether database `name` exists, holds `killmails` killmails and is `ready`;
    one that exists but is not is dropped, to be built again."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    if not exists:
        return False
    with psycopg.connect(make_conninfo(server_url, dbname=name)) as conn:
        try:
            (n,) = conn.execute("SELECT count(*) FROM killmails").fetchone()
        except psycopg.errors.UndefinedTable:
            n = -1
        if n == killmails and ready(conn):
            return True
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return False


def database_for(
    server_url: str,
    killmails: int,
    say,
    *,
    prefix: str = "bulk_backfill_bench",
    history: bool | None = None,
) -> str:
    """A generated database of this size (seed 1), built once as <prefix>_<N> and reused
    after; `history` as demo-data's (None: where init-db made the tables)."""
    name = f"{prefix}_{killmails}"
    url = make_conninfo(server_url, dbname=name)
    if reusable(server_url, name, killmails, lambda conn: True):
        say(f"reusing database {name} ({killmails:,} killmails)")
        # init-db adds what a newer version's tool tables lack (it never touches rows).
        with psycopg.connect(url) as conn:
            db.init_db(conn)
        return url
    say(f"building database {name}: demo-data --killmails {killmails} --seed {SEED}")
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(url) as conn:
        db.init_db(conn)
        load_demo_data(conn, killmails, SEED, progress=False, history=history)
    return url


def reset(url: str) -> None:
    """Every value back to NULL, then VACUUM: re-running bloats the table otherwise."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE killmails SET total_value = NULL, destroyed_value = NULL,"
            " dropped_value = NULL WHERE total_value IS NOT NULL"
        )
        conn.execute("VACUUM (ANALYZE) killmails")
        conn.execute("CHECKPOINT")


def _facts(url: str) -> tuple[list[int], int]:
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT killmail_id FROM killmails ORDER BY 1")]
        (victims,) = conn.execute("SELECT count(*) FROM victims").fetchone()
    return ids, victims


# The reference table of each rule set: fixed names, never user text.
REFERENCE_TABLES = {
    "seed": "bench_reference",
    "evekill": "bench_reference_evekill",
    "zkillboard": "bench_reference_zkillboard",
}


def reference_table(url: str, rules: str = "seed") -> None:
    """The SQL reference of every killmail, computed once per database into a table.

    The prices of a bench database never change, so each measurement's check
    can compare all of its rows with this table by a join, instead of running
    the per-killmail reference again (minutes at 300,000 killmails).
    """
    table = REFERENCE_TABLES[rules]
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
            return
        statement = statements.reference_sql("sell", rules)
        conn.execute(
            sql.SQL("CREATE TABLE {} AS {}").format(sql.Identifier(table), sql.SQL(statement)),
            {"ids": None},
        )
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (killmail_id)").format(sql.Identifier(table))
        )


def verify(
    url: str, expected_written: int, ids: list[int] | None = None, rules: str = "seed"
) -> bool:
    """Every written value equals reference::float8, and exactly the expected rows were written."""
    reference_table(url, rules)
    query = sql.SQL(
        "SELECT r.killmail_id FROM {} r JOIN killmails k USING (killmail_id)"
        " WHERE (%(ids)s::int[] IS NULL OR r.killmail_id = ANY(%(ids)s::int[]))"
        "   AND (k.total_value IS DISTINCT FROM r.total::float8"
        "     OR k.destroyed_value IS DISTINCT FROM r.destroyed::float8"
        "     OR k.dropped_value IS DISTINCT FROM r.dropped::float8)"
        " ORDER BY 1"
    ).format(sql.Identifier(REFERENCE_TABLES[rules]))
    with psycopg.connect(url) as conn:
        wrong = conn.execute(query, {"ids": ids}).fetchall()
        (written,) = conn.execute(
            "SELECT count(*) FROM killmails WHERE total_value IS NOT NULL"
        ).fetchone()
    if wrong or written != expected_written:
        raise VerificationFailed(
            f"{len(wrong)} values differ from the reference (first {wrong[:3]}); "
            f"{written} rows written, {expected_written} expected"
        )
    return True


def _bin(name: str) -> str:
    """A console script of the installed project, beside this interpreter."""
    return str(Path(sys.executable).parent / name)


class Suite:
    def __init__(self, config: SuiteConfig):
        self.config = config
        self.results: list[Measurement] = []
        self.say = config.say

    def _record(self, m: Measurement) -> Measurement:
        self.results.append(m)
        rss = f", peak RSS {m.peak_rss_mb:.0f} MB" if m.peak_rss_mb else ""
        batch = f" batch {m.batch_size}" if m.batch_size else ""
        self.say(
            f"  {m.name:<16} procs {m.procs}{batch:<11} {m.written:>9,} in {m.seconds:6.2f} s"
            f" = {m.rate:>9,.0f}/s{rss}  verified"
        )
        return m

    # -- the measured things: each one a whole command, timed from start to exit --

    def baseline(self, url: str, n: int, ids: list[int], procs: int, rnd: int) -> Measurement:
        reset(url)
        sample = baseline.spread_sample(ids, self.config.baseline_sample)
        done = run_command(
            [
                sys.executable,
                "-m",
                "benchmarks.baseline",
                url,
                "--procs",
                str(procs),
                "--sample",
                str(self.config.baseline_sample),
            ]
        )
        written = int(done.stdout.split()[-1])
        verify(url, written, sample)
        return self._record(
            Measurement.verified_run("baseline", procs, None, n, written, done.seconds, rnd)
        )

    def ceiling(self, url, n, victims, procs, chunk, rnd, formulation="temp") -> Measurement:
        reset(url)
        done = run_command(
            [
                sys.executable,
                "-m",
                "benchmarks.ceiling",
                url,
                "--formulation",
                formulation,
                "--procs",
                str(procs),
                "--chunk",
                str(chunk or 0),
            ]
        )
        written = int(done.stdout.split()[-1])
        verify(url, victims)
        shape = "single" if chunk is None else "chunked"
        name = f"ceiling-{formulation}-{shape}"
        return self._record(
            Measurement.verified_run(name, procs, chunk, n, written, done.seconds, rnd)
        )

    def run(self, url, n, victims, procs, batch, rnd, engine="numpy") -> Measurement:
        reset(url)
        done = run_command(
            [
                _bin("bulk-backfill"),
                "run",
                "--procs",
                str(procs),
                "--batch-size",
                str(batch),
                "--engine",
                engine,
            ],
            env={"DATABASE_URL": url},
        )
        verify(url, victims)
        return self._record(
            Measurement.verified_run(
                f"run-{engine}", procs, batch, n, victims, done.seconds, rnd, done.worker_peak_mb
            )
        )

    def work(self, url, n, victims, procs, batch, rnd, engine="numpy") -> Measurement:
        reset(url)
        queue = f"bench_{uuid.uuid4().hex[:10]}"
        env = {"DATABASE_URL": url, "RABBITMQ_URL": self.config.rabbitmq_url}
        try:
            queued = run_command(
                [_bin("bulk-backfill"), "queue", "--queue", queue, "--batch-size", str(batch)],
                env=env,
            )
            done = run_command(
                [
                    _bin("bulk-backfill"),
                    "work",
                    "--procs",
                    str(procs),
                    "--queue",
                    queue,
                    "--until-empty",
                    "--engine",
                    engine,
                ],
                env=env,
            )
        finally:
            connection = broker.connect(self.config.rabbitmq_url)
            channel = connection.channel()
            channel.queue_delete(queue)
            channel.queue_delete(broker.dead_letter_queue(queue))
            connection.close()
        verify(url, victims)
        m = Measurement.verified_run(
            f"work-{engine}",
            procs,
            batch,
            n,
            victims,
            done.seconds,
            rnd,
            done.worker_peak_mb,
            extra={
                "queue_seconds": queued.seconds,
                "end_to_end_rate": victims / (done.seconds + queued.seconds),
            },
        )
        return self._record(m)

    # -- the plan ----------------------------------------------------------

    def measure_all(self) -> None:
        c = self.config
        small_n = c.killmails // 5
        url = database_for(c.server_url, c.killmails, self.say)
        small_url = database_for(c.server_url, small_n, self.say)
        ids, victims = _facts(url)
        _, small_victims = _facts(small_url)
        n = c.killmails
        self.say(f"killmails {n:,} (victims {victims:,}); rounds {c.rounds}; cpus {os.cpu_count()}")

        # The headline comparisons alternate within each round, so a machine
        # that drifts over minutes moves them all alike.
        for rnd in range(c.rounds):
            self.say(f"round {rnd + 1} of {c.rounds}")
            for formulation in reversed(ceiling.FORMULATIONS):
                self.ceiling(url, n, victims, 2, 500, rnd, formulation)
            for engine in ENGINES:
                self.run(url, n, victims, 2, 500, rnd, engine)
                self.work(url, n, victims, 2, 500, rnd, engine)
            self.baseline(url, n, ids, 5, rnd)

        self.say("sweeps")
        self.baseline(url, n, ids, 1, 0)
        self.ceiling(url, n, victims, 1, None, 0)
        self.ceiling(url, n, victims, 1, 500, 0)
        for engine in ENGINES:
            for procs in (1, 4):
                self.run(url, n, victims, procs, 500, 0, engine)
        for batch in (100, 2000):
            self.run(url, n, victims, 2, batch, 0)

        self.say(f"scaling: {small_n:,} against {n:,} killmails")
        for rnd in range(c.rounds):
            for engine in ENGINES:
                self.run(small_url, small_n, small_victims, 2, 500, rnd, engine)
        self.small_n = small_n

    def measure_scale(self, sizes: list[int]) -> None:
        """run and queue + work, both engines, and the best ceiling, at each size once."""
        for n in sizes:
            url = database_for(self.config.server_url, n, self.say)
            _, victims = _facts(url)
            self.say(f"scale: {n:,} killmails (victims {victims:,})")
            self.ceiling(url, n, victims, 2, 500, 0)
            for engine in ENGINES:
                self.run(url, n, victims, 2, 500, 0, engine)
                self.work(url, n, victims, 2, 500, 0, engine)


def median_rate(results: list[Measurement], name: str, procs: int, batch=..., n=None) -> float:
    rates = [
        m.rate
        for m in results
        if m.name == name
        and m.procs == procs
        and (batch is ... or m.batch_size == batch)
        and (n is None or m.killmails == n)
    ]
    if not rates:
        raise KeyError(f"no measurement {name} procs {procs} batch {batch}")
    return statistics.median(rates)


def as_dicts(results: list[Measurement]) -> list[dict]:
    return [asdict(m) for m in results]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
