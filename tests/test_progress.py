"""bulk.progress: a terminal bar shows what is done within a second, final counts included."""

import io
import re
import time

from bulk.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _last_frame(stream: _Terminal) -> str:
    return re.split(r"[\r\n]", stream.getvalue().rstrip("\r\n"))[-1]


def test_the_last_batches_show_within_a_second_not_after_tqdms_maxinterval():
    stream = _Terminal()
    bar = Progress(
        400,
        desc="work",
        noun="batches",
        unit="batch",
        stream=stream,
        counts=("killmails", "updated", "skipped", "failed"),
    )
    # Reports as from 5 children: many in a burst, then the last few together.
    for _ in range(395):
        bar.add(1)
    time.sleep(0.3)
    for _ in range(5):
        bar.add(1)
    bar.add(0, killmails=200_000, updated=199_000, skipped=1000, failed=0)
    time.sleep(0.3)  # the parent's loop ticks every 0.25 s at most
    bar.tick()
    frame = _last_frame(stream)
    assert "400/400" in frame, frame
    assert "killmails=200000" in frame, frame
    bar.close()


def test_close_shows_the_final_counts_even_right_after_a_display():
    stream = _Terminal()
    bar = Progress(10, stream=stream)
    bar.add(9, updated=9)
    bar.add(1, updated=0, failed=1)  # within the refresh interval of the previous display
    bar.close()
    frame = _last_frame(stream)
    assert re.search(r"\b10(\.0)?/10(\.0)? ", frame) and "failed=1" in frame, frame


def test_a_scaled_rate_keeps_its_unit_apart():
    stream = _Terminal()
    bar = Progress(50_000, desc="run null", stream=stream)
    bar.add(30_000, updated=30_000)
    time.sleep(0.3)
    bar.add(15_000, updated=15_000)
    bar.close()
    frame = _last_frame(stream)
    assert re.search(r"\d k?killmail/s|\dk killmail/s", frame), frame
    assert "kkm" not in stream.getvalue() and "kkillmail" not in stream.getvalue(), frame


def test_a_note_is_a_line_of_its_own_on_a_terminal_and_off_one():
    for stream in (_Terminal(), io.StringIO()):
        bar = Progress(10, desc="demo-data", stream=stream)
        bar.add(10)
        bar.note("writing market history")
        bar.close()
        assert "demo-data: writing market history\n" in stream.getvalue()
