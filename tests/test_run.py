"""`bulk-backfill run` end to end on generated killboards, checked against the SQL reference."""

import os
import signal

import psycopg
import pytest

from tests.conftest import (
    child_pids,
    cli,
    cli_popen,
    make_demo_db,
    mismatches,
    summary_count,
    values,
    victimless,
    wait_until_valued,
)


def test_run_values_every_killmail_of_a_demo_in_many_batches(fresh_db):
    # 80 batches over 2 children: enough to hand every child many batches and meet
    # every kind of killmail; the 100,000 queue + work test is the scale test.
    url = make_demo_db(fresh_db, 8_000)
    out = cli("run", "--mode", "null", "--procs", "2", "--batch-size", "100", url=url)
    assert out.returncode == 0, out.stderr
    stored = values(url)
    no_victim = victimless(url)
    assert no_victim, "the demo should hold a few killmails without a victim"
    assert all(v != (None, None, None) for k, v in stored.items() if k not in no_victim)
    assert all(stored[k] == (None, None, None) for k in no_victim)
    assert mismatches(url) == []
    assert summary_count(out.stdout, "updated") == len(stored) - len(no_victim)
    assert summary_count(out.stdout, "skipped") == len(no_victim)


@pytest.mark.both_schemas
def test_modes_change_exactly_their_rows(demo_db):
    assert cli("run", "--mode", "all", url=demo_db).returncode == 0
    with psycopg.connect(demo_db) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT k.killmail_id FROM killmails k JOIN victims v USING (killmail_id)"
                " ORDER BY killmail_id"
            ).fetchall()
        ]
        zeros, nulls, others = ids[0:900:3], ids[1:900:3], ids[2:900:3]
        conn.execute(
            "UPDATE killmails SET total_value = 0, destroyed_value = 0,"
            " dropped_value = 0 WHERE killmail_id = ANY(%s)",
            [zeros],
        )
        conn.execute(
            "UPDATE killmails SET total_value = NULL, destroyed_value = NULL,"
            " dropped_value = NULL WHERE killmail_id = ANY(%s)",
            [nulls],
        )
        conn.execute(
            "UPDATE killmails SET total_value = 42.5, destroyed_value = 40,"
            " dropped_value = 2.5 WHERE killmail_id = ANY(%s)",
            [others],
        )
    no_victim = victimless(demo_db)

    def check(before, after, target):
        # Rows outside the mode's set are untouched; rows inside now equal the reference.
        assert {k for k in before if before[k] != after[k]} <= set(target)
        assert {m.killmail_id for m in mismatches(demo_db)}.isdisjoint(target)

    before = values(demo_db)
    # Some killmails are truly worth 0 (unpriced ship, no items), so zero mode covers them too.
    zero_now = {k for k, v in before.items() if v[0] == 0}
    assert set(zeros) < zero_now
    out = cli("run", "--mode", "zero", url=demo_db)
    after = values(demo_db)
    assert out.returncode == 0, out.stderr
    check(before, after, zero_now)
    assert len({k for k in zeros if after[k] != before[k]}) > len(zeros) * 0.9
    assert summary_count(out.stdout, "updated") == len(zero_now)
    assert summary_count(out.stdout, "skipped") == 0

    out = cli("run", "--mode", "null", url=demo_db)
    again = values(demo_db)
    check(after, again, nulls)
    assert all(again[k][0] is not None for k in nulls)
    assert summary_count(out.stdout, "updated") == len(nulls)
    # Victimless killmails still have no value, so null mode selects and skips them.
    assert summary_count(out.stdout, "skipped") == len(no_victim)

    out = cli("run", "--mode", "all", url=demo_db)
    final = values(demo_db)
    check(again, final, [k for k in before if k not in no_victim])
    assert {k for k in again if again[k] != final[k]} == set(others)
    assert summary_count(out.stdout, "updated") == len(before) - len(no_victim)
    assert mismatches(demo_db) == []


@pytest.mark.both_schemas
@pytest.mark.slow
def test_two_runs_at_once_agree_with_one(demo_db):
    for mode in ("all", "null"):
        if mode == "null":
            with psycopg.connect(demo_db) as conn:
                conn.execute("UPDATE killmails SET total_value = NULL")
        runs = [
            cli_popen("run", "--mode", mode, "--procs", "2", "--batch-size", "100", url=demo_db)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in runs]
        for p, (stdout, stderr) in zip(runs, outs):
            assert p.returncode == 0, stderr
            assert "failed 0" in stdout and "failed " not in stdout.split("failed 0")[1]
        assert mismatches(demo_db) == []
        if mode == "null":
            victims = len(values(demo_db)) - len(victimless(demo_db))
            assert sum(summary_count(o[0], "updated") for o in outs) == victims


@pytest.mark.both_schemas
def test_filters_select_the_right_killmails(demo_db):
    with psycopg.connect(demo_db) as conn:
        some = [
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM victims ORDER BY killmail_id LIMIT 5"
            ).fetchall()
        ]
        ship = conn.execute(
            "SELECT ship_type_id FROM victims WHERE ship_type_id <> 670"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
        by_ship = {
            r[0]
            for r in conn.execute(
                "SELECT killmail_id FROM victims WHERE ship_type_id = %s", [ship]
            ).fetchall()
        }
        day = conn.execute(
            "SELECT killmail_time::date FROM killmails ORDER BY killmail_id OFFSET 1500 LIMIT 1"
        ).fetchone()[0]
        on_day = {
            r[0]
            for r in conn.execute(
                "SELECT k.killmail_id FROM killmails k JOIN victims USING (killmail_id)"
                " WHERE killmail_time::date = %s",
                [day],
            ).fetchall()
        }

    def valued():
        return {k for k, v in values(demo_db).items() if v[0] is not None}

    def run(*args):
        # One child is enough: the filters are the parent's scan.
        out = cli("run", "--procs", "1", *args, url=demo_db)
        assert out.returncode == 0, out.stderr
        return out

    run(*[a for i in some[:3] for a in ("--id", str(i))])
    assert valued() == set(some[:3])
    run("--ship-type", str(ship))
    assert valued() == set(some[:3]) | by_ship
    run("--since", str(day), "--until", str(day))
    assert valued() == set(some[:3]) | by_ship | on_day
    out = run("--limit", "7")
    assert summary_count(out.stdout, "processed") == 7
    assert mismatches(demo_db) != []  # most killmails are still unvalued
    done = valued()  # once: it reads every killmail
    assert all(v[0] is None for k, v in values(demo_db).items() if k not in done)


@pytest.mark.slow
def test_ctrl_c_finishes_batches_in_hand_and_resumes(fresh_db):
    # 1,000 batches of 20: the Ctrl+C at 2,000 valued lands early in the run.
    url = make_demo_db(fresh_db, 20_000)
    p = cli_popen("run", "--procs", "2", "--batch-size", "20", url=url)
    wait_until_valued(url, 2_000)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "stopping" in stderr
    processed = summary_count(stdout, "processed")
    assert 0 < processed < 20_000
    # Whatever was written is whole and right; the rest is untouched.
    done = {k for k, v in values(url).items() if v[0] is not None}
    assert {m.killmail_id for m in mismatches(url)}.isdisjoint(done)
    resume = [line for line in stdout.splitlines() if "--after-id" in line]
    assert len(resume) == 1, stdout
    after_id = int(resume[0].split("--after-id")[1].split()[0])

    # The resume point's promise: every killmail up to it is done (bar the victimless,
    # which are never valued), so nothing at or below it needs selecting again.
    no_victim = victimless(url)
    before = values(url)
    assert all(v[0] is not None for k, v in before.items() if k <= after_id and k not in no_victim)
    pending = {k for k, v in before.items() if k > after_id and v[0] is None}
    to_value = pending - no_victim
    assert to_value, "the interrupt should leave killmails after the resume point"
    # Unvalue the last five killmails up to the resume point (normally the point itself
    # among them): null mode would select them again if the resumed scan started at
    # or below the resume point.
    reset = sorted(k for k in before if k <= after_id and k not in no_victim)[-5:]
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE killmails SET total_value = NULL, destroyed_value = NULL,"
            " dropped_value = NULL WHERE killmail_id = ANY(%s)",
            (reset,),
        )
        # Every row the resumed run writes is logged, so a killmail at or below the
        # resume point written again, or one after it left out, shows by its id.
        conn.execute("CREATE TABLE touched (killmail_id int)")
        conn.execute(
            "CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO touched VALUES (NEW.killmail_id); RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER log_touch AFTER UPDATE ON killmails"
            " FOR EACH ROW EXECUTE FUNCTION log_touch()"
        )
    out = cli("run", "--procs", "2", "--batch-size", "20", "--after-id", str(after_id), url=url)
    assert out.returncode == 0, out.stderr
    # Selected: exactly the still-NULL killmails after the resume point (victimless ones
    # at or below it are NULL too, and would be counted if the scan went back over them).
    assert summary_count(out.stdout, "selected") == len(pending)
    assert summary_count(out.stdout, "updated") == len(to_value)
    with psycopg.connect(url) as conn:
        touched = [r[0] for r in conn.execute("SELECT killmail_id FROM touched")]
    assert sorted(touched) == sorted(to_value)
    # Everything is right except the killmails unvalued above, which were left alone.
    assert {m.killmail_id for m in mismatches(url)} == set(reset)


@pytest.mark.slow
def test_a_killed_child_is_replaced_and_nothing_is_lost(fresh_db):
    # 1,200 batches of 20: the third kill, at 6,000 valued, is half-way at most.
    url = make_demo_db(fresh_db, 24_000)
    p = cli_popen("run", "--mode", "null", "--procs", "2", "--batch-size", "20", url=url)
    for round_ in range(3):
        wait_until_valued(url, 2_000 * (round_ + 1))
        pids = child_pids(p.pid)
        assert pids, "run should have child processes"
        os.kill(pids[-1], signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert stderr.count("restarting") == 3
    assert "child processes restarted: 3" in stdout
    assert mismatches(url) == []
